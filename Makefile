# heapland: the two things a newcomer does.
#   make run    build and start the compositor (headless where no display exists)
#   make test   run every test: style, host, and the QEMU guest
# Both install what they need on Debian 12 first (tests/deps).
#
# And for a machine that should keep heapland:
#   make install     the module through dkms (for every kernel with headers, and
#                    the ones installed later), its udev rule and modprobe
#                    options, heapland and heapland-heaps (with its man page)
#   make uninstall   all of that again

ARGS ?=
PREFIX ?= /usr/local
DESTDIR ?=

DKMS_NAME := device-heap
DKMS_VERSION := $(shell sed -n 's/^PACKAGE_VERSION="\(.*\)"/\1/p' kernel/dkms.conf)
DKMS_SRC := /usr/src/$(DKMS_NAME)-$(DKMS_VERSION)
KERNEL_SOURCES := Kbuild Makefile dkms.conf device_heap.h heap_compat.h \
	heap_main.c heap_buffer.c heap_memory.c heap_charge.c \
	heap_node_chrdev.c heap_node_core.c

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

# The module's source where dkms wants it, registered with dkms (idempotent).
dkms-add:
	dkms remove -m $(DKMS_NAME) -v $(DKMS_VERSION) --all >/dev/null 2>&1 || true
	rm -rf $(DKMS_SRC)
	install -d $(DKMS_SRC)
	cd kernel && install -m 644 $(KERNEL_SOURCES) $(DKMS_SRC)/
	dkms add -m $(DKMS_NAME) -v $(DKMS_VERSION)

install:
	tests/deps build
	$(MAKE) dkms-add
	cargo build --release --locked -p heapland --features winit --bin heapland
	cargo build --release --locked -p heapland-allocator --features cli --bin heapland-heaps
	install -D -m 755 target/release/heapland $(DESTDIR)$(PREFIX)/bin/heapland
	install -D -m 755 target/release/heapland-heaps $(DESTDIR)$(PREFIX)/bin/heapland-heaps
	install -D -m 644 allocator/heapland-heaps.1 $(DESTDIR)$(PREFIX)/share/man/man1/heapland-heaps.1
	install -D -m 644 kernel/70-device-heap.rules $(DESTDIR)/etc/udev/rules.d/70-device-heap.rules
	[ -e $(DESTDIR)/etc/modprobe.d/device-heap.conf ] || \
		install -D -m 644 kernel/device-heap.conf $(DESTDIR)/etc/modprobe.d/device-heap.conf
	# Every installed kernel that has headers; later kernels through dkms' autoinstall.
	dkms autoinstall
	-udevadm control --reload

uninstall:
	dkms remove -m $(DKMS_NAME) -v $(DKMS_VERSION) --all || true
	rm -rf $(DKMS_SRC)
	rm -f $(DESTDIR)$(PREFIX)/bin/heapland $(DESTDIR)$(PREFIX)/bin/heapland-heaps \
		$(DESTDIR)$(PREFIX)/share/man/man1/heapland-heaps.1 \
		$(DESTDIR)/etc/udev/rules.d/70-device-heap.rules
	@echo "kept /etc/modprobe.d/device-heap.conf (your device list); remove it by hand"
	-udevadm control --reload

.PHONY: run test dkms-add install uninstall
