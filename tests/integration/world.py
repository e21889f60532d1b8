"""The names test files imported from tests/integration/world.py before the
test world became the package tests/testworld.  New tests import from the
package's modules (`from testworld.ports import HOST, REAL_ADDR`); this
module only keeps `from world import ...` working and holds no code."""

from testworld import WorldError  # noqa: F401
from testworld.faults import Blackhole, Garbage  # noqa: F401
from testworld.ports import (BROKEN_ADDR, HOST, MITM_ADDR, REAL_ADDR,  # noqa: F401
                             REISSUE_ADDR, SPHERE_ADDR, START_TIMEOUT, free_port,
                             tls_peer_cert, wait_tcp, wait_tls)
from testworld.processes import Process  # noqa: F401
from testworld.relay import SlowLink  # noqa: F401
from testworld.socks5 import Socks5Server as TorLikeSphere  # noqa: F401
from testworld.tls import (Cert, Pki, cert_sha256_der, der_to_pem,  # noqa: F401
                           pem_to_der, spki_sha256_der, split_pem, tls_record_types)
from testworld.world import Sphere, World  # noqa: F401
