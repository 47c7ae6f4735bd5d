"""The BGP audit's records declared field by field: JSON type and meaning of each key.

Below ``bgp/`` so that ``classifier schema`` (in ``commands/``, which imports nothing of
``bgp/``) can describe them too. ``classifier bgp`` writes four kinds of record (the ``record``
key says which): route, event (``--timeline``), session (``--sessions``) and diff (``--diff``).
Their CSV columns (``ROUTE_COLUMNS``, ``EVENT_COLUMNS``, ``SESSION_COLUMNS``, ``DIFF_COLUMNS`` in
``bgp/``) list the same keys in the same order, which ``tests/test_json_schema.py`` checks;
``classifier schema --json`` turns this declaration into JSON Schema. Types are written as in the
flow record's declaration (``classifier/record.py``): ``string``, ``integer|null``, ``array`` (of
strings) or ``array<integer>``...
"""

from __future__ import annotations

Field = tuple[str, str, str]  # key, JSON type, meaning

_PATH: tuple[Field, ...] = (
    ("origin_asn", "integer|null", "origin AS (the last ASN of the path); null when it is an AS_SET"),
    ("origin_as_set", "array<integer>|null", "the origin AS_SET's members, when the origin is one"),
    ("operator", "string", "operator the route concerns (the neighbour's, else the origin's)"),
    ("as_path", "string", "the AS path as routers show it"),
    ("viewpoint_asn", "integer|null", "the ASN the route is seen from (--local-asn, else the peer's)"),
    ("neighbour_asn", "integer|null", "first ASN of the path: the viewpoint's neighbour"),
    ("relationship", "string", "direct, indirect, own or unknown: how the viewpoint reaches the operator"),
)
_VERDICT: tuple[Field, ...] = (
    ("action", "string", "block, log or allow in the chosen view"),
    ("view", "string", "announced or in-force: the policy view of action"),
    ("decided_at", "string", "the instant the policy was evaluated at"),
    ("rule", "string", "the decision rule"),
    ("reason", "string", "one sentence: which provision, event and view decided"),
)
_ATTRIBUTES: tuple[Field, ...] = (
    ("next_hops", "array", "NEXT_HOP and MP_REACH next hops"),
    ("origin_attr", "string|null", "ORIGIN attribute: IGP, EGP or INCOMPLETE"),
    ("med", "integer|null", "MULTI_EXIT_DISC"),
    ("local_pref", "integer|null", "LOCAL_PREF"),
    ("atomic_aggregate", "boolean", "ATOMIC_AGGREGATE present"),
    ("aggregator", "string|null", "AGGREGATOR as 'AS<n> <router id>'"),
    ("communities", "array", "communities as 'asn:value'"),
    ("well_known_communities", "array", "names of the well-known communities among them (BLACKHOLE...)"),
    ("extended_communities", "array", "extended communities ('rt 64500:1', 'soo ...')"),
    ("large_communities", "array", "large communities as 'a:b:c'"),
    ("originator_id", "string|null", "ORIGINATOR_ID (route reflection)"),
    ("cluster_list", "array", "CLUSTER_LIST (route reflection)"),
)

ROUTE: tuple[Field, ...] = (
    ("record", "string", "route"),
    ("file", "string", "MRT input the route was read from"),
    ("source", "string", "rib or update: a RIB entry or an UPDATE message"),
    ("prefix", "string", "the announced prefix"),
    *_PATH[:3],
    ("origin_operator", "string|null", "operator owning the origin ASN, if any"),
    ("app", "string", "the app of the operator the record decides for"),
    ("role", "string", "origin or transit: the operator's place on the path"),
    ("operator_asns", "array<integer>", "operator ASNs on the path"),
    ("transit_asns", "array<integer>", "operator ASNs on the path other than the origin"),
    _PATH[3],
    ("peer_asn", "integer|null", "ASN of the peer that sent the route to the collector"),
    ("peer_ip", "string", "address of that peer"),
    ("path_id", "integer|null", "ADD-PATH path identifier"),
    *_PATH[4:6],
    ("neighbour_operator", "string|null", "operator owning the neighbour ASN, if any"),
    _PATH[6],
    ("first_seen", "string", "first announcement, ISO 8601 UTC"),
    ("last_seen", "string", "last time the path was seen, ISO 8601 UTC"),
    ("state", "string", "live, withdrawn, replaced or session-down at the end of the input"),
    ("announcements", "integer", "times the path was announced"),
    ("withdrawals", "integer", "times it was withdrawn"),
    *_VERDICT,
    ("provisions", "array", "every provision covering the app, as 'id:status'"),
    *_ATTRIBUTES,
    ("rpki", "string|null", "RPKI origin validation (--vrps): valid, invalid or not-found"),
    ("rpki_vrps", "array", "the VRPs that decided it"),
    ("irr", "string|null", "IRR registration of (prefix, origin) (--irr)"),
    ("irr_objects", "array", "the route objects that decided it"),
)

EVENT: tuple[Field, ...] = (
    ("record", "string", "event"),
    ("time", "string", "when the change happened, ISO 8601 UTC"),
    ("event", "string", "announced, withdrawn, replaced, session-down or policy-change"),
    ("file", "string", "MRT input the change was read from"),
    ("prefix", "string", "the prefix"),
    *_PATH[:3],
    ("app", "string", "the app the event is decided for"),
    _PATH[3],
    ("previous_as_path", "string|null", "the path this one replaced"),
    ("peer_asn", "integer|null", "ASN of the peer"),
    ("peer_ip", "string", "address of the peer"),
    ("path_id", "integer|null", "ADD-PATH path identifier"),
    *_PATH[4:],
    ("previous_relationship", "string|null", "relationship of the path this one replaced"),
    ("first_seen", "string", "first announcement of the path, ISO 8601 UTC"),
    ("last_seen", "string", "last time the path was seen, ISO 8601 UTC"),
    ("detail", "string", "what changed, in words"),
    *_VERDICT,
    ("action_announced", "string", "action in the announced view"),
    ("rule_announced", "string", "rule in the announced view"),
    ("reason_announced", "string", "reason in the announced view"),
    ("provisions_announced", "array", "provisions as 'id:status' in the announced view"),
    ("action_in_force", "string", "action in the in-force view"),
    ("rule_in_force", "string", "rule in the in-force view"),
    ("reason_in_force", "string", "reason in the in-force view"),
    ("provisions_in_force", "array", "provisions as 'id:status' in the in-force view"),
)

SESSION: tuple[Field, ...] = (
    ("record", "string", "session"),
    ("peer_asn", "integer|null", "ASN of the peer"),
    ("peer_ip", "string", "address of the peer"),
    ("local_asn", "integer|null", "the recording router's ASN, when the MRT data says it"),
    ("session_type", "string", "ebgp, ibgp, route-server... as the routes show it"),
    ("session_evidence", "string", "why session_type was concluded"),
    ("next_hops", "array", "next hops of the session's routes"),
    ("first_seen", "string", "first route or message, ISO 8601 UTC"),
    ("last_seen", "string", "last route or message, ISO 8601 UTC"),
    ("messages", "integer", "BGP messages of the session"),
    ("state", "string|null", "last FSM state recorded (Established, Idle...)"),
    ("state_changes", "array", "'instant old->new' per state change"),
    ("last_state_change", "string|null", "instant of the last state change"),
    ("operator", "string", "the operator whose routes the session carried"),
    ("apps", "array", "that operator's apps"),
    ("relationship", "string", "closest relationship of its routes: direct, own, indirect, unknown"),
    ("neighbour_asns", "array<integer>", "operator ASNs the session reaches directly"),
    ("announced", "integer", "distinct prefixes announced"),
    ("withdrawn", "integer", "distinct prefixes withdrawn"),
    ("live", "integer", "distinct prefixes live at the end"),
    ("direct_prefixes", "integer", "distinct prefixes reached directly"),
    ("action", "string", "strictest action of its direct routes"),
    ("view", "string", "announced or in-force"),
    ("decided_at", "string|null", "instant of that decision; null without direct routes"),
    ("rule", "string", "the decision rule"),
    ("reason", "string", "why"),
    ("provisions", "array", "provisions as 'id:status'"),
)

DIFF: tuple[Field, ...] = (
    ("record", "string", "diff"),
    ("change", "string", "appeared or disappeared"),
    ("kind", "string", "session, direct-route or operator-prefix"),
    ("key", "string", "what identifies it in both audits"),
    ("peer_asn", "integer|null", "ASN of the peer (not for operator-prefix)"),
    ("peer_ip", "string|null", "address of the peer (not for operator-prefix)"),
    ("prefix", "string|null", "the prefix (not for session)"),
    ("operator", "string", "the operator"),
    ("neighbour_asn", "integer|null", "the neighbour ASN (direct-route)"),
    ("as_path", "string|null", "the AS path (not for session)"),
    ("origin_asn", "integer|null", "the origin ASN (operator-prefix)"),
    ("old_file", "string", "the older audit"),
    ("new_file", "string", "the newer audit"),
)

# record kind -> its fields, in CSV column order
RECORDS: dict[str, tuple[Field, ...]] = {
    "route": ROUTE,
    "event": EVENT,
    "session": SESSION,
    "diff": DIFF,
}
