# heapland: the two things a newcomer does.
#   make run    build and start the compositor (headless where no display exists)
#   make test   run every test: style, host, and the QEMU guest
# Both install what they need on Debian 12 first (tests/deps).

ARGS ?=

run:
	tests/deps
	cargo run --release -p heapland -- $(ARGS)

test:
	tests/run

.PHONY: run test
