# heapland: the two things a newcomer does.
#   make run    build and start the compositor (headless where no display exists)
#   make test   run every test: style, host, and the QEMU guest
# Both install what they need on Debian 12 first (tests/deps).

ARGS ?=

# Clients find the compositor's socket in XDG_RUNTIME_DIR; a login session
# sets it, a bare root shell (a container, CI) may not: use a private one then.
run:
	tests/deps
	@if [ -z "$$XDG_RUNTIME_DIR" ]; then \
		XDG_RUNTIME_DIR=/tmp/heapland-runtime-$$(id -u); \
		mkdir -p -m 0700 "$$XDG_RUNTIME_DIR"; \
		echo "XDG_RUNTIME_DIR was not set: using $$XDG_RUNTIME_DIR (set it for clients too)"; \
		export XDG_RUNTIME_DIR; \
	fi; \
	cargo run --release -p heapland --features winit -- $(ARGS)

test:
	tests/run

.PHONY: run test
