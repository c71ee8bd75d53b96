"""
Packaging of meetrd: the package, the twistd dropin, the shipped settings
and the init files.  The development tooling (C{tools/}: the local
Cassandra node, the console's vendoring), the tests and the benchmarks are
not packaged.
"""

from setuptools import find_packages, setup

setup(
    name="meetrd",
    version="0.1.0",
    description="A metrics daemon: HTTP API and hunter over Apache Cassandra",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    # meetrd and every package under it; twisted/plugins has no
    # __init__.py, so that it does not hide Twisted's own.
    packages=find_packages(include=["meetrd", "meetrd.*"]) +
    ["twisted.plugins"],
    package_data={"twisted.plugins": ["meetr_plugin.py"],
                  "meetrd": ["openapi.json", "console/*.html",
                             "console/*.js", "console/*.css",
                             "console/*.svg", "console/vendor/*"],
                  "meetrd.proto": ["remote.proto"]},
    install_requires=[
        "twisted[tls]==26.10.0",
        "klein==24.8.0",
        "treq==26.7.0",
        # The prepared URLs of targets (meetrd.hunter.fetch).
        "hyperlink==21.0.0",
        "pyyaml==6.0.3",
        # The Twisted connection class is deprecated in 3.30 and announced
        # for removal in 3.31.
        "cassandra-driver>=3.30.1,<3.31",
        "prometheus-client==0.26.0",
        "pydantic==2.14.3",
        # Quantile sketches of rollups, stored as the library's protobuf
        # message.
        "ddsketch==3.0.1",
        "protobuf==7.36.2",
        # JSON batches decoded into typed items in one pass.
        "msgspec==0.23.0",
        # Snappy (block format) of Prometheus remote write bodies.
        "cramjam==2.14.0",
        "promql-parser==0.12.0",
    ],
    extras_require={
        "test": [
            "pytest==9.2.0",
            "pytest-twisted==1.14.3",
            # tests/test_openapi.py: schemathesis, and the two of its
            # dependencies that test imports itself.
            "schemathesis==4.32.5",
            "hypothesis==6.170.15",
            "jsonschema-rs==0.60.3",
            # protoc, to check meetrd/proto/remote_pb2.py is up to date.
            "grpcio-tools==1.85.1",
            # tests/test_promql_api.py: a Prometheus API client.
            "prometheus-api-client==0.7.2",
            # tests/test_console_browser.py: the system's Chromium through
            # its chromedriver (Debian's chromium and chromium-driver).
            "selenium==4.51.0",
            # tests/test_install.py: the wheel, built without isolation
            # (setuptools builds wheels by itself from 70.1 on).
            "build==1.6.1",
            "setuptools==84.2.1",
        ],
    },
    data_files=[
        ("share/meetrd/etc/meetr", ["etc/meetr/meetr.yaml"]),
        ("share/meetrd/etc/haproxy", ["etc/haproxy/meetr.cfg"]),
        ("share/meetrd/init", ["init/meetr", "init/meetr.sysconfig",
                               "init/meetr@.service",
                               "init/meetr-instances",
                               "init/meetr-functions"]),
    ],
)
