# The two Quickstart commands: `make up` runs the product, `make test` runs the tests.
.PHONY: bootstrap up demo test test-slow test-newest bench-engine

bootstrap:
	scripts/bootstrap

# API + worker + local Redis + file storage on the embedded defaults.
up: bootstrap
	.venv/bin/jaxport up

# Convert the example shipped in the repo with the CLI, no service.
demo: bootstrap
	.venv/bin/jaxport convert --function examples/prod.py:prod --params examples/prod_params.npz \
	  --input 'xs=f32[b,2]' -o out/prod

# The quick suite (a few minutes on 2 cores): everything but the larger-model sweep.
test: bootstrap
	.venv/bin/pytest -q -p no:cacheprovider -m "not slow"

# The larger models (keras.applications families, EfficientNet) and every lowering rule in TF.js
# (Node) and LiteRT: CI runs these after `make test`.
test-slow: bootstrap
	.venv/bin/pytest -q -p no:cacheprovider -m slow

# The wheel in a clean venv with the newest Python and the newest JAX/Keras/TF pyproject.toml
# allows: the seed example, MobileNetV2 with the default targets, the quick lowering rules and
# the missing-extra messages (scripts/lane-newest; CI runs it after `make test-slow`).
test-newest: bootstrap
	scripts/lane-newest

bench-engine: bootstrap
	.venv/bin/python bench/bench_engine.py
