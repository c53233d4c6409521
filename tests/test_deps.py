"""dvc.yaml's code deps are exactly what each stage imports, and no stage imports another.

A stage's code is its script plus every project module it imports, directly or through
other project modules (imports inside functions count too: they run when called). A
package __init__.py counts when it holds code, because importing a module runs it.
"""
import ast

import pytest
import yaml

from conftest import ROOT

DVC_FILES = [ROOT / "dvc.yaml", *sorted(ROOT.glob("studies/*/dvc.yaml"))]


def stages_of(dvc_file):
    """{name: stage} of a dvc.yaml, named as DVC names them (<file>:<name> outside the root);
    a foreach stage's template stands for all its items (their paths: from the root, wdir)."""
    prefix = "" if dvc_file.parent == ROOT else f"{dvc_file.relative_to(ROOT).as_posix()}:"
    return {prefix + name: stage.get("do", stage)
            for name, stage in yaml.safe_load(dvc_file.read_text())["stages"].items()}


DVC_YAML = {name: stage for dvc_file in DVC_FILES for name, stage in stages_of(dvc_file).items()}


def module_file(name):
    """The project file of a dotted module name, or None (not ours)."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path):
    """Every dotted name an import statement in this file can load, with its packages."""
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from catsdogs import params` loads catsdogs.params if that is a module.
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            yield from (".".join(parts[:i]) for i in range(1, len(parts) + 1))


def has_code(path):
    body = ast.parse(path.read_text()).body
    return any(not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))
               for node in body)


def code_of(script):
    """The script, its packages' __init__.py (`python -m` runs them first) and the project
    files they import, transitively."""
    packages = [folder / "__init__.py" for folder in script.parents if ROOT in folder.parents]
    found, todo = set(), [script, *(init for init in packages if init.is_file())]
    while todo:
        path = todo.pop()
        if path in found:
            continue
        found.add(path)
        todo += [f for f in map(module_file, imported_modules(path)) if f is not None]
    return {p.relative_to(ROOT).as_posix() for p in found
            if p.name != "__init__.py" or has_code(p)}


def stage_script(stage):
    module = stage["cmd"].split()[2]  # python -m stages.<name> [args]
    return ROOT / (module.replace(".", "/") + ".py")


@pytest.mark.parametrize("name", sorted(DVC_YAML))
def test_code_deps_are_exactly_the_imported_modules(name):
    stage = DVC_YAML[name]
    declared = {dep for dep in stage["deps"] if dep.endswith(".py")}
    imported = code_of(stage_script(stage))
    assert sorted(imported - declared) == [], "imported but missing from deps"
    assert sorted(declared - imported) == [], "listed in deps but not imported"


@pytest.mark.parametrize("name", sorted(DVC_YAML))
def test_no_stage_imports_another_stage(name):
    script = stage_script(DVC_YAML[name])
    others = [p for p in code_of(script) if p.startswith("stages/") and ROOT / p != script
              and p != "stages/__init__.py"]
    assert others == []


@pytest.mark.parametrize("name", ["split", "decode", "compare_report",
                                  "studies/legacy/dvc.yaml:legacy_report"])
def test_light_stages_do_not_load_tensorflow(name):
    code = code_of(stage_script(DVC_YAML[name]))
    heavy = [(path, module) for path in sorted(code)
             for module in imported_modules(ROOT / path) if module in ("tensorflow", "keras")]
    assert heavy == []


def test_the_checker_sees_nested_and_transitive_imports():
    """Control: the import walk finds what it must, so the tests above can fail."""
    found = code_of(ROOT / "stages" / "compare_report.py")
    assert "catsdogs/evaluation.py" in found and "catsdogs/paths.py" in found
    assert "catsdogs/data.py" not in found  # the report stage stays free of TensorFlow
    trainer = code_of(ROOT / "stages" / "train_head.py")
    assert "catsdogs/resume.py" in trainer  # only through catsdogs/training.py


@pytest.mark.parametrize("name", ["evaluate", "export"])
def test_scoring_stages_do_not_depend_on_the_training_code(name):
    """A change to fitting or resume code does not rerun evaluate or export."""
    code = code_of(stage_script(DVC_YAML[name]))
    assert {"catsdogs/training.py", "catsdogs/resume.py"} & code == set()


def test_every_function_fits_in_sixty_lines_and_the_data_stages_in_250():
    """Issue 20's reading budget: a function reads on one screen, fetch and validate on two."""
    long = [f"{path.relative_to(ROOT)}:{node.name} ({node.end_lineno - node.lineno + 1})"
            for folder in ("catsdogs", "stages", "studies", "scripts", "benchmarks")
            for path in sorted((ROOT / folder).rglob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            and node.end_lineno - node.lineno + 1 > 60]
    assert long == []
    lines = {name: len((ROOT / "stages" / f"{name}.py").read_text().splitlines())
             for name in ("fetch", "validate")}
    assert max(lines.values()) <= 250, lines
