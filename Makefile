# SPDX-License-Identifier: Apache-2.0
# pam_totp: see README.md. `make` builds into build/, `make test` runs every test.
PREFIX     ?= /usr
DESTDIR    ?=
MULTIARCH  ?= $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
PAMDIR     ?= /lib/$(MULTIARCH)/security
LIBEXECDIR ?= $(PREFIX)/libexec/pam-totp
CHECKER    ?= $(LIBEXECDIR)/pam-totp-check
SYSTEMDDIR ?= /lib/systemd/system

CC      ?= gcc
CFLAGS  ?= -O2
# Always applied, also when a packager passes CFLAGS and LDFLAGS of their own.
MODULE_CFLAGS  = -fPIC -fstack-protector-strong -fstack-clash-protection -D_FORTIFY_SOURCE=2 \
                 -fvisibility=hidden -Wall -Wextra -Werror -DCHECKER_PATH='"$(CHECKER)"'
ifneq ($(filter x86_64 i%86,$(shell uname -m)),)
MODULE_CFLAGS += -fcf-protection
endif
MODULE_LDFLAGS = -shared -Wl,-z,relro -Wl,-z,now
# Position independent, RELRO and immediate binding, reproducible (no paths,
# no build id), stripped: what hardening-check asks of the package.
GOFLAGS_BUILD = -trimpath -buildmode=pie -ldflags="-s -w -buildid= -bindnow"

GO_SOURCES := $(shell find internal cmd pam_totp -name '*.go' -not -name '*_test.go') go.mod go.sum

.PHONY: all test vet bench bench-against fuzz stress sanitizers deb install install-verifier uninstall demo demo-stop fresh clean
all: build/pam_totp.so build/pam-totp-check build/pam-totp-check-directory build/pam-totp-agent build/pam-totp-verifier build/totp-enroll

MODULE_SOURCES = pam_totp/pam_totp.c pam_totp/options.c pam_totp/transport.c pam_totp/relay.c
build/pam_totp.so: $(MODULE_SOURCES) pam_totp/pam_totp.h
	@test -f /usr/include/security/pam_modules.h || { echo "building pam_totp.so needs libpam0g-dev (scripts/deps installs it as root)"; exit 1; }
	@mkdir -p build
	$(CC) $(CPPFLAGS) $(CFLAGS) $(MODULE_CFLAGS) $(LDFLAGS) $(MODULE_LDFLAGS) -o $@ $(MODULE_SOURCES) -lpam

# The checker is started for every login: without cgo, so it loads no
# shared library into a root process and starts fast.
build/pam-totp-check: $(GO_SOURCES)
	@mkdir -p build
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $@ ./pam_totp/checker

# The same with the directory store, for directory=: apart, so that the
# file store's checker does not load LDAP and TLS at every login.
build/pam-totp-check-directory: $(GO_SOURCES)
	@mkdir -p build
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $@ ./pam_totp/checker-directory

# The agent: the checker's login path with both stores, kept running.
build/pam-totp-agent: $(GO_SOURCES)
	@mkdir -p build
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $@ ./cmd/pam-totp-agent

# The verifier: the same engine beside slapd, for hosts that hold no key
# to the directory (its own Debian package).
build/pam-totp-verifier: $(GO_SOURCES)
	@mkdir -p build
	CGO_ENABLED=0 go build $(GOFLAGS_BUILD) -o $@ ./cmd/pam-totp-verifier

# totp-enroll uses cgo so that user lookups go through NSS (LDAP, sssd).
build/totp-enroll: $(GO_SOURCES)
	@mkdir -p build
	CGO_CFLAGS="-O2 -fstack-protector-strong -fstack-clash-protection -D_FORTIFY_SOURCE=2" \
		go build $(GOFLAGS_BUILD) -o $@ ./cmd/totp-enroll

vet:
	@test -z "$$(gofmt -l cmd internal pam_totp test)" || { gofmt -l cmd internal pam_totp test; echo "gofmt needed"; exit 1; }
	go vet ./...
	@go mod tidy -diff || { echo "go.mod or go.sum is not tidy: run go mod tidy"; exit 1; }

# Unit tests need nothing; the end-to-end tests (real libpam, sshd, sudo)
# need root and the packages that scripts/test-deps installs, and skip
# with a message otherwise.
test:
	scripts/deps --tests --with-reference --deb
	$(MAKE) all build/pamlogin vet sanitizers
	@mkdir -p build/fuzz-corpus && cp pam_totp/fuzz/corpus/* build/fuzz-corpus/
	build/fuzz-frames -max_total_time=15 -max_len=9000 -timeout=5 build/fuzz-corpus
	go test -count=1 ./internal/... ./cmd/...
	go test -count=1 -timeout 40m -v ./test/
	# Once more with an agent of the run's own in every module line: the
	# system store and directory= logins go through pam-totp-agent.
	PAMTOTP_TEST_AGENT=1 go test -count=1 -timeout 40m -v ./test/

# Every Go parser under go test -fuzz, FUZZTIME each (make test runs only
# their seeds). A crash is saved under testdata/fuzz and then fails make test.
FUZZTIME ?= 60s
FUZZ_TARGETS = internal/secret:FuzzParseFile internal/secret:FuzzParseState internal/secret:FuzzDecodeSlots \
	internal/protocol:FuzzReadFrame internal/protocol:FuzzParseReq internal/protocol:FuzzParseSplit \
	internal/options:FuzzParseAndExpand internal/verify:FuzzCheck \
	internal/gafile:FuzzParse internal/pskc:FuzzParse \
	internal/tokenimport:FuzzParseCSV internal/tokenimport:FuzzParseOath \
	internal/directory:FuzzDecodeEntry internal/directory:FuzzParseConfig
fuzz: sanitizers
	@mkdir -p build/fuzz-corpus && cp pam_totp/fuzz/corpus/* build/fuzz-corpus/
	build/fuzz-frames -max_total_time=$(patsubst %s,%,$(FUZZTIME)) -max_len=9000 -timeout=5 build/fuzz-corpus
	@set -e; for t in $(FUZZ_TARGETS); do \
		echo "fuzz $$t for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) ./$${t%%:*}; \
	done

# The long runs: 1000 SIGKILLs of the checker during updates (make test
# runs 200). Root only, like the end-to-end tests.
stress: all
	PAMTOTP_STRESS=1 go test -count=1 -timeout 30m -v -run 'TestCheckerKilledDuringUpdates|TestCheckerKilledAtItsFirstWrite|TestPAMRaces' ./test/

# The C side under the sanitizers: libFuzzer on the module's real frame
# decoder (clang), and the module plus a libpam client built with gcc's
# AddressSanitizer, LeakSanitizer and UndefinedBehaviorSanitizer for the
# end-to-end test TestCModuleUnderSanitizers.
SANITIZE = -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
build/fuzz-frames: pam_totp/fuzz/fuzz_frames.c pam_totp/relay.c pam_totp/pam_totp.h
	clang -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Wall -Wextra -Werror -o $@ $< -lpam

build/asan/pam_totp.so: $(MODULE_SOURCES) pam_totp/pam_totp.h
	@mkdir -p build/asan
	$(CC) $(SANITIZE) $(filter-out -D_FORTIFY_SOURCE=2,$(MODULE_CFLAGS)) $(MODULE_LDFLAGS) -o $@ $(MODULE_SOURCES) -lpam

build/asan/pamlogin: bench/pamlogin.c
	@mkdir -p build/asan
	$(CC) $(SANITIZE) -Wall -Wextra -Werror -o $@ $< -lpam

sanitizers: build/fuzz-frames build/asan/pam_totp.so build/asan/pamlogin

# Not a test: measures pam_totp against pam_google_authenticator and
# pam_oath and writes docs/benchmarks.md, docs/benchmarks-scaling.md,
# docs/benchmarks-directory.md and docs/benchmarks-agent.md.
# Root only (it adds users and starts sshd in a private mount namespace, as
# the tests do).
BENCH_TOOLS = build/pamlogin build/bench/nullcheck build/bench/nullcheck-sync
bench: all $(BENCH_TOOLS)
	scripts/deps --tests --with-reference --bench
	go test -count=1 -run '^$$' -bench 'Logins|NodelayOracle|LoginScaling|Directory|Agent|Verifier' -benchtime 1x -timeout 60m ./test/

# Before and after: this tree against the commit REV, interleaved in one
# run (libpam and sudo loops), into build/bench-against.md. A REV with the
# state file in slots (internal/secret/slots.go) starts from the enrolled
# state as this tree does; an older one starts without a state file.
bench-against: all $(BENCH_TOOLS)
	@test -n "$(REV)" || { echo "usage: make bench-against REV=<commit>"; exit 1; }
	scripts/deps --tests --with-reference --bench
	rm -rf build/against && git worktree prune && git worktree add --detach build/against $(REV)
	$(MAKE) -C build/against build/pam_totp.so build/pam-totp-check
	PAMTOTP_BENCH_BASE=$(CURDIR)/build/against/build \
	PAMTOTP_BENCH_BASE_STATE=$$(test -f build/against/internal/secret/slots.go && echo enrolled || echo none) \
	go test -count=1 -run '^$$' -bench 'Logins' -benchtime 1x -timeout 60m ./test/
	# The directory login too, where REV has one (build/bench-against-directory.md).
	if $(MAKE) -C build/against build/pam-totp-check-directory; then \
	PAMTOTP_BENCH_BASE=$(CURDIR)/build/against/build PAMTOTP_BENCH_REV=$(REV) \
	go test -count=1 -run '^$$' -bench 'Directory$$' -benchtime 1x -timeout 60m ./test/; fi
	git worktree remove --force build/against

# The floor of an exec'd checker: an empty static Go program, and the same
# with one fdatasync (bench/nullcheck).
build/bench/nullcheck: bench/nullcheck/main.go
	@mkdir -p build/bench
	CGO_ENABLED=0 go build -trimpath -o $@ ./bench/nullcheck
build/bench/nullcheck-sync: bench/nullcheck/main.go
	@mkdir -p build/bench
	CGO_ENABLED=0 go build -trimpath -ldflags="-X main.sync=1" -o $@ ./bench/nullcheck

build/pamlogin: bench/pamlogin.c
	$(CC) -O2 -Wall -Wextra -Werror -o $@ $< -lpam

install: all
	install -D -m 0644 build/pam_totp.so $(DESTDIR)$(PAMDIR)/pam_totp.so
	install -D -m 0755 build/pam-totp-check $(DESTDIR)$(CHECKER)
	install -D -m 0755 build/pam-totp-check-directory $(DESTDIR)$(CHECKER)-directory
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/pam-totp/ldap packaging/ldap/pam-totp.schema packaging/ldap/pam-totp.ldif packaging/ldap/pam-totp-acl.conf packaging/ldap/pam-totp-acl.ldif \
		packaging/ldap/pam-totp-records.ldif packaging/ldap/pam-totp-acl-records.ldif
	install -D -m 0755 build/totp-enroll $(DESTDIR)$(PREFIX)/bin/totp-enroll
	install -D -m 0755 build/pam-totp-agent $(DESTDIR)$(PREFIX)/sbin/pam-totp-agent
	install -D -m 0644 -t $(DESTDIR)$(SYSTEMDDIR) packaging/systemd/pam-totp-agent.socket packaging/systemd/pam-totp-agent.service
	install -D -m 0644 docs/man/pam-totp-agent.8 $(DESTDIR)$(PREFIX)/share/man/man8/pam-totp-agent.8
	install -D -m 0644 docs/man/pam_totp.8 $(DESTDIR)$(PREFIX)/share/man/man8/pam_totp.8
	install -D -m 0644 docs/man/totp-enroll.1 $(DESTDIR)$(PREFIX)/share/man/man1/totp-enroll.1
	install -D -m 0644 packaging/bash-completion/totp-enroll $(DESTDIR)$(PREFIX)/share/bash-completion/completions/totp-enroll

# The verifier, apart: its Debian package installs it on the directory's
# servers, which need no PAM module.
install-verifier: build/pam-totp-verifier
	install -D -m 0755 build/pam-totp-verifier $(DESTDIR)$(PREFIX)/sbin/pam-totp-verifier
	install -D -m 0644 packaging/systemd/pam-totp-verifier.service $(DESTDIR)$(SYSTEMDDIR)/pam-totp-verifier.service
	install -D -m 0644 docs/man/pam-totp-verifier.8 $(DESTDIR)$(PREFIX)/share/man/man8/pam-totp-verifier.8
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/pam-totp-verifier packaging/verifier/verifier.conf packaging/ldap/pam-totp-acl-verifier.conf packaging/ldap/pam-totp-acl-verifier.ldif

# What install put there, and nothing else. Enrollments, the directory's
# configuration and /etc/pam.d are the admin's: take pam_totp out of the
# PAM stacks first, or every login through them fails.
uninstall:
	rm -f $(DESTDIR)$(PAMDIR)/pam_totp.so $(DESTDIR)$(CHECKER) $(DESTDIR)$(CHECKER)-directory \
		$(DESTDIR)$(PREFIX)/bin/totp-enroll $(DESTDIR)$(PREFIX)/share/man/man8/pam_totp.8 \
		$(DESTDIR)$(PREFIX)/share/man/man1/totp-enroll.1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions/totp-enroll \
		$(DESTDIR)$(PREFIX)/sbin/pam-totp-agent $(DESTDIR)$(PREFIX)/share/man/man8/pam-totp-agent.8 \
		$(DESTDIR)$(SYSTEMDDIR)/pam-totp-agent.socket $(DESTDIR)$(SYSTEMDDIR)/pam-totp-agent.service \
		$(DESTDIR)$(PREFIX)/sbin/pam-totp-verifier $(DESTDIR)$(SYSTEMDDIR)/pam-totp-verifier.service \
		$(DESTDIR)$(PREFIX)/share/man/man8/pam-totp-verifier.8 $(DESTDIR)$(PREFIX)/share/pam-totp-verifier/verifier.conf \
		$(DESTDIR)$(PREFIX)/share/pam-totp-verifier/pam-totp-acl-verifier.conf $(DESTDIR)$(PREFIX)/share/pam-totp-verifier/pam-totp-acl-verifier.ldif \
		$(DESTDIR)$(PREFIX)/share/pam-totp/ldap/pam-totp.schema $(DESTDIR)$(PREFIX)/share/pam-totp/ldap/pam-totp.ldif \
		$(DESTDIR)$(PREFIX)/share/pam-totp/ldap/pam-totp-acl.conf $(DESTDIR)$(PREFIX)/share/pam-totp/ldap/pam-totp-acl.ldif \
		$(DESTDIR)$(PREFIX)/share/pam-totp/ldap/pam-totp-records.ldif $(DESTDIR)$(PREFIX)/share/pam-totp/ldap/pam-totp-acl-records.ldif
	-rmdir $(DESTDIR)$(PREFIX)/share/pam-totp-verifier 2>/dev/null
	-rmdir $(DESTDIR)$(PREFIX)/share/pam-totp/ldap $(DESTDIR)$(PREFIX)/share/pam-totp $(DESTDIR)$(LIBEXECDIR) 2>/dev/null

# The Debian package, into build/: the tree is copied to build/deb/src with
# packaging/deb as its debian/ directory, and built there.
deb:
	scripts/deps --deb
	rm -rf build/deb && mkdir -p build/deb/src
	tar --exclude=./build --exclude=./.git --exclude=./demo -cf - . | tar -xf - -C build/deb/src
	cp -r packaging/deb build/deb/src/debian
	cd build/deb/src && dpkg-buildpackage -us -uc -b
	cp build/deb/*.deb build/
	@ls build/*.deb

# A fresh Debian 12 (debootstrap) runs the README's commands: root, the
# network, about 15 minutes (scripts/fresh).
fresh:
	scripts/fresh

demo:
	scripts/deps
	$(MAKE) all
	scripts/demo start

demo-stop:
	scripts/demo stop

clean:
	rm -rf build
