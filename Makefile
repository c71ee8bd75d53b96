# meetrd's tasks.  On a fresh machine with Python 3.11+, JDK 17, Maven, Go
# and make, `make run` and `make test` set up everything else themselves.

PYTHON_BOOT ?= python3
VENV ?= .venv
PYTHON = $(VENV)/bin/python
RUN_DIR = .run
# A settings file to run with; when empty, `make run` writes one for the
# local development node.
MEETR_CONFIG ?=

.PHONY: venv run test test-cluster test-unit bench clean peers proto console-vendor chromium

venv: $(VENV)/.installed console-vendor

$(VENV)/.installed: setup.py
	test -x $(PYTHON) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PYTHON) -m pip install -q --upgrade "pip>=24"
	$(PYTHON) -m pip install -q -e '.[test]' --config-settings editable_mode=compat
	touch $@

include Makefile.devnode

# The web console's chart library (uPlot, pinned, its sha512 checked) from
# the npm registry into meetrd/console/vendor, once per version.
console-vendor: $(VENV)/.installed
	@$(PYTHON) -m tools.consolevendor

# The system's Chromium and its driver, which the console's browser tests
# drive (nothing is downloaded at run time): installed with apt-get when
# missing, as root on Debian.
chromium:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get > /dev/null; then \
	    apt-get update -q && apt-get install -y -q chromium chromium-driver; \
	  else \
	    echo "make: the browser tests need Chromium:" \
	      "apt-get install chromium chromium-driver" >&2; \
	  fi; \
	fi

# Run meetrd in the foreground: with MEETR_CONFIG when given, otherwise
# against the local node (started when it is not running).
run: venv
ifeq ($(strip $(MEETR_CONFIG)),)
	@mkdir -p $(RUN_DIR)
	@node=$$($(DEVNODE) start | tail -n 1) && \
	  $(PYTHON) -m tools.devconfig "$$node" > $(RUN_DIR)/meetr.yaml && \
	  echo "meetrd: settings $(RUN_DIR)/meetr.yaml, Cassandra $$node" >&2
	$(VENV)/bin/twistd --pidfile= -n meetr -c $(RUN_DIR)/meetr.yaml
else
	$(VENV)/bin/twistd --pidfile= -n meetr -c $(MEETR_CONFIG)
endif

# Every test, against the local node (started when it is not running) and
# the real peer programs some tests talk to (built once, see peers); then
# the cluster tests, on a three-node cluster of its own (test-cluster).
test: venv peers chromium
	@node=$$($(DEVNODE) start | tail -n 1) && \
	  MEETR_TEST_CASSANDRA="$$node" $(PYTHON) -m pytest -q tests $(PYTEST_ARGS)
	@$(MAKE) -s test-cluster

# The tests that need three Cassandra nodes: a cluster on 127.0.0.1-3,
# ports 19142/17100 (beside the single node's), files in
# .cassandra-cluster, started for them and stopped after them.  The tests
# that kill a node run last: a node started again spends its first minute
# or so catching up (hints, compactions, a cold JIT), and the shared hunt's
# test, the busiest, would find one of its nodes answering late.
CLUSTER_ENV = MEETR_NODE_HOME=$(CURDIR)/.cassandra-cluster \
  MEETR_NODE_PORT=19142 MEETR_NODE_STORAGE_PORT=17100 MEETR_NODE_COUNT=3
CLUSTER_TESTS = tests/test_membership_live.py tests/test_cluster.py \
  tests/test_cluster_daemons.py

test-cluster: venv
	@points=$$($(CLUSTER_ENV) $(DEVNODE) start | tail -n 1) || \
	  { $(CLUSTER_ENV) $(DEVNODE) stop; exit 1; }; \
	  $(CLUSTER_ENV) MEETR_TEST_CASSANDRA="$${points%%,*}" \
	  MEETR_TEST_CLUSTER="$$points" $(PYTHON) -m pytest -q $(CLUSTER_TESTS) \
	  $(PYTEST_ARGS); status=$$?; $(CLUSTER_ENV) $(DEVNODE) stop; \
	  exit $$status

# Peer programs of the tests (vmagent, Prometheus), built with `go install` from the Go
# module proxy into .cache/peers, once per version.
peers: venv
	@$(PYTHON) -m tests.peers > /dev/null

# The Python module of the remote write protobuf messages, after a change
# of meetrd/proto/remote.proto.
proto: venv
	$(PYTHON) -m grpc_tools.protoc -Imeetrd/proto --python_out=meetrd/proto \
	  meetrd/proto/remote.proto

# The tests that need no Cassandra node.
test-unit: venv
	$(PYTHON) -m pytest -q tests -m "not cassandra" $(PYTEST_ARGS)

bench: venv
	@node=$$($(DEVNODE) start | tail -n 1) && \
	  MEETR_TEST_CASSANDRA="$$node" $(PYTHON) bench/run.py

clean:
	rm -rf $(VENV) $(RUN_DIR) build *.egg-info
