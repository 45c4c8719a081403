# Containers and Kubernetes (README, "Deployment"). Included by the Makefile, whose $(VENV),
# $(PY) and $(STAMP) it uses.
IMAGE ?= rnnserve:0.1.0
IMAGE_CUDA ?= rnnserve:0.1.0-cuda
K8S_MANIFESTS := $(addprefix deploy/k8s/,deployment.yaml service.yaml hpa.yaml pdb.yaml)
K8S_VERSIONS ?= 1.27.0 1.37.0

.PHONY: image image-cuda image-test image-cuda-test lint-deploy

image:  ## the CPU image: docker build where a Docker engine answers, else buildah bud
	deploy/build.sh Dockerfile $(IMAGE)

image-cuda:  ## the CUDA image (needs the nvidia/cuda base image: a registry, or a local copy)
	deploy/build.sh Dockerfile.cuda $(IMAGE_CUDA)

# Slow, root: debootstrap a stand-in base, buildah-build the Dockerfile, run it with podman,
# health + parse + metrics + HEALTHCHECK + SIGTERM drain (tests/image_test.sh). Not in `make test`.
image-test: $(STAMP)
	PY=$(PY) IMAGE=$(IMAGE) bash tests/image_test.sh

# Slow, root: Dockerfile.cuda built and run the same way, on a Debian stand-in for the CUDA base:
# it checks the build steps, user, health, parse and drain; with no CUDA libraries in the stand-in,
# --device auto serves on CPU, so the GPU path itself is not exercised. KEEP_BASE=0: the fake
# nvidia/cuda base and the image built on it are deleted afterwards, so `make image-cuda` never
# picks them up.
image-cuda-test: $(STAMP)
	PY=$(PY) IMAGE=$(IMAGE_CUDA) DOCKERFILE=Dockerfile.cuda KEEP_BASE=0 bash tests/image_test.sh

lint-deploy: $(STAMP)  ## hadolint the Dockerfiles, validate the manifests (also in `make test`)
	$(VENV)/bin/hadolint Dockerfile Dockerfile.cuda
	for v in $(K8S_VERSIONS); do \
		$(VENV)/bin/kubernetes-validate --strict --quiet -k $$v $(K8S_MANIFESTS) || exit 1; done

lint: lint-deploy
