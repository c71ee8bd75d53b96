"""
Certificates made for the tests: a CA and a certificate it signs for the
loopback names.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True)
class Issued:
    """
    The PEM files of one test PKI.
    """

    ca: Path
    cert: Path
    key: Path
    combined: Path


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def issue(folder: Path, caName: str = "meetrd test CA",
          names: tuple[str, ...] = ("localhost",),
          addresses: tuple[str, ...] = ("127.0.0.1",)) -> Issued:
    """
    Write a CA (C{ca.pem}) and a certificate it signs (C{cert.pem},
    C{key.pem}, and both in C{node.pem}) for the given names and addresses.
    """
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    caKey = ec.generate_private_key(ec.SECP256R1())
    caCert = (x509.CertificateBuilder()
              .subject_name(_name(caName)).issuer_name(_name(caName))
              .public_key(caKey.public_key())
              .serial_number(x509.random_serial_number())
              .not_valid_before(now - datetime.timedelta(minutes=5))
              .not_valid_after(now + datetime.timedelta(days=2))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                             critical=True)
              .sign(caKey, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    alternatives = [x509.DNSName(n) for n in names] + [
        x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    cert = (x509.CertificateBuilder()
            .subject_name(_name(names[0])).issuer_name(_name(caName))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(alternatives),
                           critical=False)
            .sign(caKey, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    keyBytes = key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                 serialization.NoEncryption())
    certBytes = cert.public_bytes(pem)
    issued = Issued(folder / "ca.pem", folder / "cert.pem", folder / "key.pem",
                    folder / "node.pem")
    issued.ca.write_bytes(caCert.public_bytes(pem))
    issued.cert.write_bytes(certBytes)
    issued.key.write_bytes(keyBytes)
    issued.combined.write_bytes(keyBytes + certBytes)
    return issued
