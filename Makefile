# heapland: the two things a newcomer does.
#   make run    build and start the compositor (headless where no display exists)
#   make test   run every test: style, host, and the QEMU guest
# Both install what they need on Debian 12 first (tests/deps).
#
# And for a machine that should keep heapland:
#   make build       (as yourself) heapland, heapland-power and heapland-heaps
#   make install     (as root) the module through dkms (for every kernel with
#                    headers, and the ones installed later), its udev rule and
#                    modprobe options, heapland, heapland-power and heapland-heaps (man page too),
#                    the example configuration and the display managers' session
#                    entry (share/wayland-sessions/heapland.desktop)
#   make uninstall   all of that again

ARGS ?=
PREFIX ?= /usr/local
DESTDIR ?=

DKMS_NAME := device-heap
DKMS_VERSION ?= $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' kernel/dkms.conf)
DKMS_SRC := /usr/src/$(DKMS_NAME)-$(DKMS_VERSION)
# Every C file and header of kernel/: Kbuild picks what a kernel builds.
KERNEL_SOURCES := Kbuild Makefile dkms.conf \
	$(sort $(notdir $(wildcard kernel/*.c kernel/*.h)))

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

# The module's source where dkms wants it, registered with dkms. Replaces an
# earlier registration of the same version only.
dkms-add:
	dkms remove -m $(DKMS_NAME) -v $(DKMS_VERSION) --all >/dev/null 2>&1 || true
	rm -rf $(DKMS_SRC)
	install -d $(DKMS_SRC)
	cd kernel && install -m 644 $(KERNEL_SOURCES) $(DKMS_SRC)/
	sed -i 's/^PACKAGE_VERSION=.*/PACKAGE_VERSION="$(DKMS_VERSION)"/' $(DKMS_SRC)/dkms.conf
	dkms add -m $(DKMS_NAME) -v $(DKMS_VERSION)

# As yourself (cargo and target/ stay yours); `make install` then copies.
build:
	tests/deps build
	cargo build --release --locked -p heapland --features winit --bin heapland --bin heapland-power
	cargo build --release --locked -p heapland-allocator --features cli --bin heapland-heaps

# As root, after `make build`.
install:
	@for b in heapland heapland-power heapland-heaps; do \
		[ -x target/release/$$b ] || { echo "target/release/$$b missing: run 'make build' first (as yourself)"; exit 1; }; \
	done
	command -v dkms >/dev/null || tests/deps build
	$(MAKE) dkms-add
	install -D -m 755 target/release/heapland $(DESTDIR)$(PREFIX)/bin/heapland
	install -D -m 755 target/release/heapland-power $(DESTDIR)$(PREFIX)/bin/heapland-power
	install -D -m 755 target/release/heapland-heaps $(DESTDIR)$(PREFIX)/bin/heapland-heaps
	install -D -m 644 allocator/heapland-heaps.1 $(DESTDIR)$(PREFIX)/share/man/man1/heapland-heaps.1
	install -D -m 644 compositor/config.example.toml $(DESTDIR)$(PREFIX)/share/doc/heapland/config.example.toml
	install -d $(DESTDIR)$(PREFIX)/share/wayland-sessions
	sed 's|^Exec=heapland|Exec=$(PREFIX)/bin/heapland|; s|^TryExec=heapland|TryExec=$(PREFIX)/bin/heapland|' \
		compositor/heapland.desktop >$(DESTDIR)$(PREFIX)/share/wayland-sessions/heapland.desktop
	install -D -m 644 kernel/70-device-heap.rules $(DESTDIR)/etc/udev/rules.d/70-device-heap.rules
	[ -e $(DESTDIR)/etc/modprobe.d/device-heap.conf ] || \
		install -D -m 644 kernel/device-heap.conf $(DESTDIR)/etc/modprobe.d/device-heap.conf
	# Every installed kernel with headers (dkms skips those before 6.12); later
	# kernels get it from dkms' own kernel hook (AUTOINSTALL).
	@built=0; for b in /lib/modules/*/build; do \
		[ -e "$$b/Makefile" ] || continue; \
		k=$$(basename "$$(dirname "$$b")"); \
		dkms install -m $(DKMS_NAME) -v $(DKMS_VERSION) -k "$$k" && built=1; \
	done; \
	[ $$built = 1 ] || echo "no kernel with headers took the module: apt install linux-headers-$$(uname -r), then dkms autoinstall"
	# The rule for heap nodes that exist already, not only for new ones.
	-udevadm control --reload && udevadm trigger --subsystem-match=device_heap --subsystem-match=dma_heap

uninstall:
	dkms remove -m $(DKMS_NAME) -v $(DKMS_VERSION) --all || true
	rm -rf $(DKMS_SRC)
	rm -f $(DESTDIR)$(PREFIX)/bin/heapland $(DESTDIR)$(PREFIX)/bin/heapland-power \
		$(DESTDIR)$(PREFIX)/bin/heapland-heaps \
		$(DESTDIR)$(PREFIX)/share/man/man1/heapland-heaps.1 \
		$(DESTDIR)$(PREFIX)/share/doc/heapland/config.example.toml \
		$(DESTDIR)$(PREFIX)/share/wayland-sessions/heapland.desktop \
		$(DESTDIR)/etc/udev/rules.d/70-device-heap.rules
	@echo "kept /etc/modprobe.d/device-heap.conf (your device list); remove it by hand"
	-udevadm control --reload

.PHONY: run test dkms-add build install uninstall
