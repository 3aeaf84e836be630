# EvilNet: the two commands are `make up` (the whole pipeline on this machine)
# and `make test` (the whole suite, against the real services).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        := .venv
BIN         := $(VENV)/bin
INVENTORY   ?= inventories/local
PLAYBOOK    := $(BIN)/ansible-playbook -i $(INVENTORY)
JAVA17_HOME := /usr/lib/jvm/java-17-openjdk-amd64
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.PHONY: help prerequisites venv stage up down status test test-kraft lint \
        cluster-prerequisites cluster-up cluster-down cluster-status cluster-stage cluster-deploy

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

prerequisites:  ## Java 17, Maven, docker-compose, Prometheus, Chromium (the dashboards page's tests), apt-ftparchive and gpg (the staged Debian repositories) through apt, when missing (Debian 12)
	@missing=""; \
	[ -x $(JAVA17_HOME)/bin/java ] || missing="$$missing openjdk-17-jdk-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	[ -x /usr/bin/prometheus ] && [ -x /usr/bin/promtool ] || missing="$$missing prometheus"; \
	[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || missing="$$missing chromium chromium-driver"; \
	command -v apt-ftparchive >/dev/null || missing="$$missing apt-utils"; \
	command -v gpg >/dev/null || missing="$$missing gnupg"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing through apt:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(BIN)/evilnet: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --editable '.[dev]'
	@touch $@

venv: $(BIN)/evilnet  ## The controller's virtual environment (.venv) with the evilnet tool

stage: prerequisites venv  ## Resolve, verify and cache the pinned artifacts
	$(BIN)/evilnet stage

up: stage  ## Bring the whole pipeline up on this machine and show its health
	$(PLAYBOOK) ansible/site.yml
	$(BIN)/evilnet -i $(INVENTORY) status
	@echo "Dashboards: $(BIN)/evilnet dashboards serve -i $(INVENTORY) → http://127.0.0.1:8050"

down: venv  ## Stop every service (data stays)
	$(PLAYBOOK) ansible/playbooks/down.yml

status: venv  ## Health of every service
	$(BIN)/evilnet -i $(INVENTORY) status

lint: venv  ## ruff and ansible-lint (production profile)
	$(BIN)/ruff check .
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/ansible-lint ansible/

test: up  ## The whole suite against the stack `make up` brought up, then the KRaft tier
	$(BIN)/pytest
	$(MAKE) --no-print-directory test-kraft

# The KRaft tier (docs/kafka-metadata-modes.md): the Kafka-facing tests (marked kraft)
# against the local stack in KRaft mode. Both stacks use the same addresses, so the
# ZooKeeper-mode one is stopped first (its data stays) and the KRaft one at the end,
# pass or fail.
KRAFT_INVENTORY := inventories/local-kraft

test-kraft: stage  ## The kraft-marked tests on inventories/local-kraft (stops inventories/local first)
	$(BIN)/ansible-playbook -i inventories/local ansible/playbooks/down.yml
	$(BIN)/ansible-playbook -i $(KRAFT_INVENTORY) ansible/site.yml
	$(BIN)/evilnet -i $(KRAFT_INVENTORY) status
	EVILNET_TEST_INVENTORY=$(KRAFT_INVENTORY) $(BIN)/pytest -m kraft; status=$$?; \
	  $(BIN)/ansible-playbook -i $(KRAFT_INVENTORY) ansible/playbooks/down.yml >/dev/null; \
	  exit $$status

# The test bed (testbed/, README's "The test bed"): the hosts of inventories/cluster
# as separate Debian 12 machines under systemd-nspawn, reached over SSH. As root.
# CLUSTER_HOSTS="zk-1 zk-2" acts on those hosts only.
CLUSTER_HOSTS ?=
# The bed's controller stages into a cache of its own: the local stack's
# (~/.cache/evilnet) may be re-staged from another tree at the same time.
CLUSTER_STAGE ?= $(CURDIR)/.run/testbed/stage
CLUSTER_PLAYBOOK := EVILNET_CACHE=$(CLUSTER_STAGE) $(BIN)/ansible-playbook -i inventories/cluster

cluster-prerequisites:  ## systemd-nspawn, debootstrap, ssh, apt-ftparchive and gpg through apt, when missing (Debian 12)
	@missing=""; \
	command -v systemd-nspawn >/dev/null || missing="$$missing systemd-container"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	command -v ssh >/dev/null && command -v ssh-keygen >/dev/null || missing="$$missing openssh-client"; \
	command -v apt-ftparchive >/dev/null || missing="$$missing apt-utils"; \
	command -v gpg >/dev/null || missing="$$missing gnupg"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing through apt:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

cluster-up: cluster-prerequisites venv  ## Boot the test bed's hosts (rootfs built once) and wait for SSH
	$(BIN)/python -m testbed up $(CLUSTER_HOSTS)

cluster-down: venv  ## Stop and remove the test bed's hosts and bridge (the cached rootfs stays)
	$(BIN)/python -m testbed down $(CLUSTER_HOSTS)

cluster-status: venv  ## Each test bed host: down, no SSH answer, or its systemd state
	$(BIN)/python -m testbed status $(CLUSTER_HOSTS)

cluster-stage: prerequisites cluster-prerequisites venv  ## Stage the bed's artifacts, its Debian packages among them
	EVILNET_CACHE=$(CLUSTER_STAGE) $(BIN)/evilnet stage --debian

cluster-deploy: cluster-up cluster-stage  ## site.yml on the bed from this controller over SSH, then every service's health
	$(CLUSTER_PLAYBOOK) ansible/site.yml
	$(BIN)/evilnet -i inventories/cluster status
