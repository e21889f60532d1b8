# The user is told (issue 14): a refusal inside an NSS application becomes
# one desktop notification (detector/nss/events.c -> detector-notify ->
# org.freedesktop.Notifications).
#
#   make test-notify    tests/notify: unmodified tstclnt under detector-run,
#                       refused through the test world's MITM, seen by the
#                       agent on a private session bus (about 20 s)

.PHONY: test-notify notify-deps
EXTRA_TESTS += test-notify

notify-deps:
	@scripts/install-deps.sh mk/notify-packages.txt

test-notify: deps notify-deps all
	cd tests/notify && DETECTOR_BUILD=$(abspath $(BUILD)) \
	  $(PYTHON) -m pytest -p no:cacheprovider -q -rs .
