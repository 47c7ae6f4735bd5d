"""Audit transit and peering with the apps' operators from routing data.

MRT files (RIBs and update streams) and the live kernel routing table are read for the routes
that concern an operator's ASNs; every such route is classified ``direct`` (the neighbour through
which it is reached is itself an operator ASN: the "directly contracted or arranged transit or
peering" of the orders) or ``indirect``, and decided with the shared policy engine. The modules
each do one job: ``aspath`` (path facts), ``mrt`` (streaming reader: framing, prefilter, RIB
entries), ``updates`` (BGP4MP walker: update messages to route events), ``routes`` (route state and
timeline), ``decide`` (policy), ``output`` (writers), ``kernel`` (pyroute2), ``prefixes``
(operator prefix index), ``build`` and ``export`` (prefix lists), ``cli`` (commands).
"""
