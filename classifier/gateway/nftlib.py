"""A handle on nftables: libnftables in-process when present, else the ``nft`` binary.

The gateway talks to nftables often (a set element per decided flow), so it uses libnftables
through ctypes: one command is a library call, not a process. The same text goes to either
backend, which is why the dry run can print exactly what is installed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import shutil
import subprocess

from classifier.errors import UserError

_OUTPUT_JSON = 1 << 4  # NFT_CTX_OUTPUT_JSON


class NftError(UserError):
    """nft refused a command; the message is nft's own first error line and the command."""


class Nft:
    """Runs nft command text; ``json`` output for listings."""

    def __init__(self) -> None:
        self._lib: ctypes.CDLL | None = None
        self._ctx: int | None = None
        self._json_ctx: int | None = None
        name = ctypes.util.find_library("nftables") or "libnftables.so.1"
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            lib = None
        if lib is not None:
            lib.nft_ctx_new.restype = ctypes.c_void_p
            lib.nft_ctx_new.argtypes = [ctypes.c_uint32]
            for fn in ("nft_ctx_buffer_output", "nft_ctx_buffer_error"):
                getattr(lib, fn).argtypes = [ctypes.c_void_p]
                getattr(lib, fn).restype = ctypes.c_int
            for fn in ("nft_ctx_get_output_buffer", "nft_ctx_get_error_buffer"):
                getattr(lib, fn).argtypes = [ctypes.c_void_p]
                getattr(lib, fn).restype = ctypes.c_char_p
            lib.nft_run_cmd_from_buffer.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
            lib.nft_run_cmd_from_buffer.restype = ctypes.c_int
            lib.nft_ctx_output_set_flags.argtypes = [ctypes.c_void_p, ctypes.c_uint]
            lib.nft_ctx_set_dry_run.argtypes = [ctypes.c_void_p, ctypes.c_bool]
            lib.nft_ctx_free.argtypes = [ctypes.c_void_p]
            self._lib = lib
        elif shutil.which("nft") is None:
            raise UserError("nftables is not installed: neither libnftables nor the nft command was found")

    def _context(self, lib: ctypes.CDLL, as_json: bool) -> int:
        attr = "_json_ctx" if as_json else "_ctx"
        ctx = getattr(self, attr)
        if ctx is None:
            ctx = lib.nft_ctx_new(0)
            lib.nft_ctx_buffer_output(ctx)
            lib.nft_ctx_buffer_error(ctx)
            if as_json:
                lib.nft_ctx_output_set_flags(ctx, _OUTPUT_JSON)
            setattr(self, attr, ctx)
        return ctx

    def run(self, text: str, *, as_json: bool = False, check: bool = False) -> str:
        """Run nft command text (one or many lines, as in ``nft -f``); its output, or NftError.

        ``check`` asks the kernel to validate without committing (``nft -c``).
        """
        if self._lib is None:
            argv = ["nft", *(["-j"] if as_json else []), *(["-c"] if check else []), "-f", "-"]
            proc = subprocess.run(argv, input=text, capture_output=True, text=True)
            if proc.returncode != 0:
                raise NftError(_first_error(proc.stderr, text))
            return proc.stdout
        lib = self._lib
        ctx = self._context(lib, as_json)
        if check:
            lib.nft_ctx_set_dry_run(ctx, True)
        try:
            rc = lib.nft_run_cmd_from_buffer(ctx, text.encode())
        finally:
            if check:
                lib.nft_ctx_set_dry_run(ctx, False)
        out = (lib.nft_ctx_get_output_buffer(ctx) or b"").decode(errors="replace")
        err = (lib.nft_ctx_get_error_buffer(ctx) or b"").decode(errors="replace")
        if rc != 0:
            raise NftError(_first_error(err, text))
        return out

    def works(self, text: str) -> bool:
        """Would the kernel accept this? (validated, never committed)"""
        try:
            self.run(text, check=True)
        except NftError:
            return False
        return True

    def list_json(self, what: str) -> list[dict]:
        """``nft -j list <what>`` as the list of objects under "nftables" (metainfo dropped)."""
        return self.json_cmd(f"list {what}")

    def json_cmd(self, cmd: str) -> list[dict]:
        """A command's JSON output as the list of objects under "nftables" (metainfo dropped)."""
        out = self.run(cmd, as_json=True)
        if not out.strip():
            return []
        return [o for o in json.loads(out).get("nftables", []) if "metainfo" not in o]

    def close(self) -> None:
        if self._lib is not None:
            for attr in ("_ctx", "_json_ctx"):
                ctx = getattr(self, attr)
                if ctx is not None:
                    self._lib.nft_ctx_free(ctx)
                    setattr(self, attr, None)


def _first_error(stderr: str, text: str) -> str:
    lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
    first = next((ln for ln in lines if ln.startswith("Error")), lines[0] if lines else "failed")
    cmd = text.strip().splitlines()[0] if text.strip() else ""
    return f"nft: {first.removeprefix('Error: ')} (command: {cmd[:160]})"
