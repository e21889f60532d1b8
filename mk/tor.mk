# Real Tor: detector-spheres' unit tests and the private Tor network tests.
#
#   make test-spheres   config validation unit tests (no tor; seconds)
#   make test-tor       tests/tornet against a private Tor network (3
#                       authorities, 2 middles, 5 exits, 5 spheres), run in
#                       private network/mount/PID namespaces; a few minutes
#                       (the harness is tests/testworld/tornet.py, run as the
#                       module testworld.tornet with tests/ on PYTHONPATH)
#
# See docs/tor-network.md.

TORNET_TIMEOUT ?= 900

.PHONY: test-spheres test-tor
EXTRA_TESTS += test-spheres test-tor

test-spheres:
	$(PYTHON) -m pytest -p no:cacheprovider -q sphere-controller/tests

# test_scenarios.py runs sphere-probe through the spheres.
test-tor: deps $(BUILD)/sphere-probe
	@mkdir -p $(BUILD)
	TORNET_REPORT=$(abspath $(BUILD))/tornet-measurements.json \
	  TORNET_SCENARIO_REPORT=$(abspath $(BUILD))/tornet-scenarios.json \
	  DETECTOR_BUILD=$(abspath $(BUILD)) PYTHONPATH=$(CURDIR)/tests \
	  timeout --kill-after=30 $(TORNET_TIMEOUT) \
	  $(PYTHON) -m testworld.tornet isolate -- \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs tests/tornet
