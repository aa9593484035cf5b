# make demo: the seed scenario with its figures (DEMO_SECS=N seconds per
#            variant, DEMO_TSV=path to also write the table as TSV).
# make test: lint, the pure-Go tests under the race detector and the
#            end-to-end tests, with each notifier (eventfd, self-pipe).
# Both first install the Debian packages they need if they are missing.

DEMO_SECS ?= 6
STATICCHECK_VERSION = v0.8.2
GOBIN ?= $(shell go env GOPATH)/bin

.PHONY: demo test lint build deps bench benchmarks

deps:
	./.ci/install-deps

build: deps
	dune build

demo: build
	./_build/default/test/seed.exe --secs $(DEMO_SECS) --gc-smoke 2 $(if $(DEMO_TSV),--tsv $(DEMO_TSV))

# make bench: every figure of the bridge, each with its baseline in the same
#             run, interleaved (BENCH_SECS=N seconds per variant, BENCH_TSV=path
#             to also write them as TSV). See bench/bench.ml.
BENCH_SECS ?= 3

bench: build
	./_build/default/bench/bench.exe --secs $(BENCH_SECS) --seed ./_build/default/test/seed.exe $(if $(BENCH_TSV),--tsv $(BENCH_TSV))

# make benchmarks: make bench, then BENCHMARKS.md's table written from its TSV.
benchmarks: build
	./_build/default/bench/bench.exe --secs $(BENCH_SECS) --seed ./_build/default/test/seed.exe --tsv _build/bench.tsv
	{ sed '/<!-- table: begin -->/q' BENCHMARKS.md; echo; echo "$$(date +%F), $$(nproc) CPUs, OCaml $$(ocamlfind ocamlopt -version):"; echo; \
	  awk -f bench/tsv2md.awk _build/bench.tsv; echo; sed -n '/<!-- table: end -->/,$$p' BENCHMARKS.md; } > _build/BENCHMARKS.md
	mv _build/BENCHMARKS.md BENCHMARKS.md

lint: deps
	@files=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$files" || { echo "gofmt would change: $$files"; exit 1; }
	go vet ./...
	go vet -tags lwt_selfpipe ./...
	GOOS=darwin go vet ./notify_other.go  # the self-pipe notifier type-checks off Linux
	test -x $(GOBIN)/staticcheck || go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(GOBIN)/staticcheck ./...
	dune build @check  # compiles lwt_interop.mli, for ocamldoc
	mkdir -p _build/doc && ocamlfind ocamldoc -package lwt.unix -I _build/default/.lwt_interop.objs/byte \
		-html -d _build/doc -warn-error lwt_interop.mli

test: lint
	go test -race -count=1 ./...
	go test -race -count=1 -tags lwt_selfpipe ./...
