# cairn's Makefile (GNU make).
#
#   make            build bin/cairn
#   make run        a whole cluster with a FUSE mount on this machine
#                   (METAD_PORT, METAD_HTTP_PORT, BLOCKDS, RACKS)
#   make test       everything CI runs (.ci/run): vet, unit and end-to-end tests
#                   (screenshots of the web UI under .dev/artifacts)
#   make race       the concurrent packages under the race detector
#   make lint       gofmt, go vet, staticcheck
#   make fuzz       every fuzz target for $(FUZZTIME)
#   make bench      every benchmark once
#   make crash      the kill matrix with random kill points, many rounds,
#                   then the metad group under faults for $(CRASH_GROUP)
#   make install    bin/cairn into $(PREFIX)/bin, and /sbin/mount.cairn

# Recipes run in bash with -e (stop at the first failing command), -u (an
# unset variable is an error) and -o pipefail (a pipeline fails when any of
# its commands fails, not only the last).
SHELL := bash
.SHELLFLAGS := -euo pipefail -c

GO       ?= go
PREFIX   ?= /usr/local
DEV_DIR  ?= $(CURDIR)/.dev/cluster
DEV_MNT  ?= $(CURDIR)/.dev/mnt
# make run's ports (0: any free port) and blockds, spread over RACKS racks
# (0: none).
METAD_PORT      ?= 9000
METAD_HTTP_PORT ?= 9870
BLOCKDS         ?= 3
RACKS           ?= 0
FUZZTIME ?= 20s
BENCHTIME ?= 1x

# The packages that run goroutines against each other.
RACE_PKGS := ./metad/... ./blockd/... ./client/... ./mount/... ./checksum/... ./xfer/...

# staticcheck: the installed one, else this release, fetched and cached by go run.
STATICCHECK ?= $(or $(shell command -v staticcheck),$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2)

.DEFAULT_GOAL := build
.PHONY: build run deps test race lint fuzz bench crash install clean

build:
	$(GO) build -buildvcs=auto -o bin/cairn ./cmd/cairn

# Ctrl-C stops the cluster and unmounts $(DEV_MNT). In another terminal,
# bin/cairn dev status --dir $(DEV_DIR) shows the daemons and
# bin/cairn dev restart NAME --dir $(DEV_DIR) starts one again.
run: deps build
	mkdir -p $(DEV_DIR) $(DEV_MNT)
	bin/cairn dev --dir $(DEV_DIR) --mount $(DEV_MNT) --blockds $(BLOCKDS) --racks $(RACKS) \
		--metad 127.0.0.1:$(METAD_PORT) --metad-http 127.0.0.1:$(METAD_HTTP_PORT)

# cairn mounts through FUSE 3, whose fusermount3 lets a mount be made and
# undone; the end-to-end tests also compile a C program (cc) and run tar,
# rsync, git, perl and vim on the mount, and drive WebHDFS with curl and
# Python fsspec (Debian python3-fsspec, run by /usr/bin/python3). As root we install what is
# missing; otherwise we say what it is. The multi-host tests (tests/netns)
# also need ip(8) and nsenter(1), and the web UI's browser test
# (tests/webui_test.go) Debian's chromium, installed when root; without
# root they are not asked for (the browser test skips outside CI).
DEP_PKGS := fusermount3:fuse3 cc:gcc tar:tar rsync:rsync git:git perl:perl vim:vim curl:curl /usr/lib/python3/dist-packages/fsspec/implementations/webhdfs.py:python3-fsspec
ROOT_DEP_PKGS := ip:iproute2 nsenter:util-linux chromium:chromium
deps:
	@missing=""; \
	deps="$(DEP_PKGS)"; \
	if [ "$$(id -u)" = 0 ]; then deps="$$deps $(ROOT_DEP_PKGS)"; fi; \
	for dep in $$deps; do \
		command -v "$${dep%%:*}" >/dev/null || test -e "$${dep%%:*}" || missing="$$missing $${dep#*:}"; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing; \
		else \
			echo "cairn's build and tests need:$$missing (FUSE 3 also needs /dev/fuse): e.g. sudo apt-get install$$missing" >&2; \
			exit 1; \
		fi; \
	fi

# CAIRN_BIN: the end-to-end tests in tests/ run the binary just built instead
#   of building their own.
# -count=1: never report a cached result; the end-to-end tests depend on the
#   binary and the machine, which the test cache does not see.
# -timeout 14m: a hung test (a stuck mount, say) panics with every
#   goroutine's stack, well before CI gives up on the job silently.
# -p is left at its default: packages test in parallel, which is safe because
#   every cluster binds port 0 and lives in its own temporary directories.
# -artifacts -outputdir: what tests keep in t.ArtifactDir() (the web UI's
#   screenshots) goes under $(ARTIFACTS)/_artifacts, a directory a test; the
#   test log names each screenshot's path.
ARTIFACTS ?= $(CURDIR)/.dev/artifacts
test: deps build
	$(GO) vet ./...
	rm -rf $(ARTIFACTS)/_artifacts
	mkdir -p $(ARTIFACTS)
	CAIRN_BIN=$(CURDIR)/bin/cairn $(GO) test -count=1 -timeout 14m -artifacts -outputdir $(ARTIFACTS) ./...

# -race slows code several times, hence the longer timeout.
race:
	$(GO) test -race -count=1 -timeout 20m $(RACE_PKGS)

lint:
	@unformatted=$$(gofmt -l .); \
	if [ -n "$$unformatted" ]; then echo "gofmt -w needed on:" >&2; echo "$$unformatted" >&2; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

# go test -list prints a package's fuzz targets, then "ok  PACKAGE ...";
# awk turns that into "PACKAGE TARGET" lines. -fuzz takes one target of one
# package at a time; -run '^$$' skips the unit tests, which go test ran
# already. New failing inputs are written to the package's testdata/fuzz/.
fuzz:
	@$(GO) test -list '^Fuzz' ./... \
	| awk '/^Fuzz/ { names[n++] = $$1; next } /^ok/ { for (i = 0; i < n; i++) print $$2, names[i]; n = 0 }' \
	| while read -r pkg name; do \
		echo "== $$pkg $$name"; \
		$(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) "$$pkg" </dev/null; \
	done

# -run '^$$': no tests, only benchmarks. -benchtime 1x: each benchmark runs
# once, to show it works; measure with BENCHTIME=5s, say. SCALE_BLOCKS sets
# the blocks of metad's scale benchmarks (docs/PERFORMANCE.md): BenchmarkScale
# in metad's process, and BenchmarkScaleRPC, 1,000 simulated blockds over
# gRPC against the real metad process (tests/scale_rpc_bench_test.go).
SCALE_BLOCKS ?= 100000
bench: build
	CAIRN_SCALE_BLOCKS=$(SCALE_BLOCKS) CAIRN_BIN=$(CURDIR)/bin/cairn $(GO) test -run '^$$' -bench . -benchtime $(BENCHTIME) ./...

# The kill matrix (tests/killmatrix_test.go) with random kill points:
# CRASH_ROUNDS rounds (each a row of the matrix on a cluster of its own),
# none started after CRASH_TIME. CRASH_SEED repeats a run (0: from the
# clock). The test's whole output goes to $(CRASH_DIR)/crash.log and the
# figures to $(CRASH_DIR)/crash-report.txt, shown at the end; with
# CRASH_LOGS=DIR every round's logs and manifests are kept in DIR.
# Then TestMetadGroupChaos (tests/metad_group_chaos_test.go): three metads
# in a Raft group, each on a host of its own, SIGKILLed, restarted, cut
# off, paused and all killed at once, and blockds cut off, for
# CRASH_GROUP under a workload whose every acknowledged op must hold
# (make test runs it for 45 s, 60 s in CI). CRASH_SEED seeds its faults
# too; its output goes to $(CRASH_DIR)/crash-group.log, its summary is
# appended to the report, and with CRASH_LOGS=DIR its daemons' logs go
# to DIR/group.
CRASH_ROUNDS ?= 50
CRASH_TIME   ?= 40m
CRASH_SEED   ?= 0
CRASH_GROUP  ?= 10m
CRASH_DIR    ?= $(CURDIR)/.dev
CRASH_LOGS   ?=
crash: deps build
	mkdir -p $(CRASH_DIR)
	rm -f $(CRASH_DIR)/crash-report.txt $(CRASH_DIR)/crash-group-report.txt
	status=0; \
	CAIRN_BIN=$(CURDIR)/bin/cairn CAIRN_KILLMATRIX_OUT=$(CRASH_DIR)/crash-report.txt CAIRN_KILLMATRIX_LOGS=$(CRASH_LOGS) \
		$(GO) test -count=1 -timeout 120m -run '^TestKillMatrix$$' -v ./tests/ \
		-crash.rounds=$(CRASH_ROUNDS) -crash.time=$(CRASH_TIME) -crash.seed=$(CRASH_SEED) \
		>$(CRASH_DIR)/crash.log 2>&1 || status=$$?; \
	CAIRN_BIN=$(CURDIR)/bin/cairn CAIRN_CHAOS_OUT=$(CRASH_DIR)/crash-group-report.txt \
		CAIRN_CHAOS_LOGS=$(if $(CRASH_LOGS),$(CRASH_LOGS)/group) \
		$(GO) test -count=1 -timeout 60m -run '^TestMetadGroupChaos$$' -v ./tests/ \
		-crash.group=$(CRASH_GROUP) -crash.groupseed=$(CRASH_SEED) \
		>$(CRASH_DIR)/crash-group.log 2>&1 || status=$$?; \
	{ echo; cat $(CRASH_DIR)/crash-group-report.txt 2>/dev/null || tail -50 $(CRASH_DIR)/crash-group.log; } >>$(CRASH_DIR)/crash-report.txt; \
	cat $(CRASH_DIR)/crash-report.txt 2>/dev/null || tail -50 $(CRASH_DIR)/crash.log; \
	echo "make crash: go test exit $$status; its whole output is in $(CRASH_DIR)/crash.log and $(CRASH_DIR)/crash-group.log"; \
	exit $$status

# mount(8) runs /sbin/mount.TYPE for `mount -t cairn` and /etc/fstab lines.
# DESTDIR stages the installation under another root, for packaging.
install: build
	install -D -m 0755 bin/cairn $(DESTDIR)$(PREFIX)/bin/cairn
	install -d $(DESTDIR)/sbin
	ln -sf $(PREFIX)/bin/cairn $(DESTDIR)/sbin/mount.cairn

# .dev holds `make run`'s cluster; its mount must be stopped first, or rm
# would delete the files in the cluster through it.
clean:
	@if grep -qs " $(DEV_MNT) " /proc/self/mountinfo; then \
		echo "$(DEV_MNT) is still mounted: stop 'make run' first" >&2; exit 1; \
	fi
	rm -rf bin .dev
