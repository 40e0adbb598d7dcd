# The kit's own justfile: its setup recipes (install, test, dist) and the
# database recipes every project gets, imported from the file dbtasks ships
# (dbtasks/share/dbtasks.just; `dbtasks adopt` copies it into other projects).
# The same recipes as the Makefile, same meaning.
#
#   just init
#   just db-migrate-create "add user email"
#   just ENV=staging CONFIRM=staging_db db-migrate

# The kit's definitions below take the place of the shipped ones of the same name.
set allow-duplicate-recipes := true
set allow-duplicate-variables := true

import 'dbtasks/share/dbtasks.just'

python := env_var_or_default("PYTHON", "python3")
venv := env_var_or_default("VENV", ".venv")
dbtasks := env_var_or_default("DBTASKS", venv / "bin/dbtasks")
pytest_args := env_var_or_default("PYTEST_ARGS", "-n 2")

# Create .venv and install dbtasks with its tools (just, black, squawk, ...); again when pyproject.toml changes
install:
    @test {{venv}}/.installed -nt pyproject.toml || ({{python}} -m venv {{venv}} && {{venv}}/bin/pip install --quiet --upgrade pip && {{venv}}/bin/pip install --quiet -e '.[all,test]' && touch {{venv}}/.installed)

# Set up: venv, start the database, migrate to head, demo data, status
init: install
    @{{dbtasks}} init

# Run the test suite in parallel (starts its own throwaway PostgreSQL)
test: install
    @{{venv}}/bin/pytest {{pytest_args}}

# Build a wheel and an sdist of dbtasks into dist/ (pipx install dist/dbtasks-*.whl)
dist: install
    @{{venv}}/bin/python -m build --no-isolation --outdir dist .
