"""The optional compiled code, Cython: the per-packet loop (classifier/_batchcount.pyx, _pcapscan.pyx,
_partfeed.pyx), DNS messages (_dnsparse.pyx), ClientHello and QUIC Initial frames (_hello.pyx), QUIC
Initial keys and packet opening (_quicinitial.pyx, with OpenSSL's libcrypto).

Everything else is declared in pyproject.toml. Without a C compiler (or Python headers) the build
of the extension is skipped with a warning and the install goes on: the package then runs its
pure-Python loop, which gives the same records (``classifier --version`` says which one runs).
"""

from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, CompileError, ExecError, LinkError, PlatformError

_BUILD_ERRORS = (CCompilerError, CompileError, ExecError, LinkError, PlatformError, OSError)
_FALLBACK = "the pure-Python per-packet loop will run (same records, slower)"


class OptionalBuildExt(build_ext):
    """build_ext that warns instead of failing when the extension cannot be compiled."""

    def run(self) -> None:
        try:
            super().run()
        except _BUILD_ERRORS as exc:
            self._skip(exc)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except _BUILD_ERRORS as exc:
            self._skip(exc)

    def _skip(self, exc: BaseException) -> None:
        self.warn(f"classifier: compiled loop not built ({exc}); {_FALLBACK}")


setup(
    ext_modules=cythonize(
        [
            Extension("classifier._batchcount", ["classifier/_batchcount.pyx"]),
            Extension("classifier._pcapscan", ["classifier/_pcapscan.pyx"]),
            Extension("classifier._partfeed", ["classifier/_partfeed.pyx"]),
            Extension("classifier._dnsparse", ["classifier/_dnsparse.pyx"]),
            Extension("classifier._hello", ["classifier/_hello.pyx"]),
            # OpenSSL's libcrypto (Debian: libssl-dev), whose SHA-256 and AES it calls; without
            # it only this one is skipped, and QUIC Initials go through hashlib and cryptography.
            Extension(
                "classifier._quicinitial",
                ["classifier/_quicinitial.pyx"],
                libraries=["crypto"],
                define_macros=[("OPENSSL_API_COMPAT", "0x10101000L")],
            ),
        ],
        language_level=3,
        quiet=True,
    ),
    cmdclass={"build_ext": OptionalBuildExt},
)
