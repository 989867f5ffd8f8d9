"""The import graph of the densebox package: no cycles, and no module importing from a layer
above its own (docs/architecture.md draws the layers).

An edge A -> B is any ``import`` in A's source, at any depth (inside functions too), of the
densebox module B; ``from pkg import name`` counts as an import of ``pkg.name`` when that is
a module and of ``pkg`` otherwise. Importing a submodule runs its package's ``__init__``,
but that is not counted: every package would otherwise "import" itself through its own
submodules.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'densebox'

# (layer, module prefixes), bottom first. A module may import from its own layer and below.
# The longest matching prefix decides, so densebox.zoo.hub (2) sits below densebox.zoo (3).
LAYERS = [
    (0, ['densebox.version', 'densebox.registry']),
    (1, ['densebox.structures', 'densebox.ops', 'densebox.retrieval', 'densebox.zoo.manifest',
         'densebox.visualization.palette', 'densebox.engine.torchscript_weights',
         'densebox.engine.checkpoint', 'densebox.engine.checkpoint_schemes']),
    (2, ['densebox.config', 'densebox.config_check', 'densebox.zoo.hub',
         'densebox.zoo.archives', 'densebox.zoo.converters']),
    (3, ['densebox.models', 'densebox.datasets', 'densebox.evaluation', 'densebox.visualization',
         'densebox.converters', 'densebox.engine', 'densebox.zoo', 'densebox.reco']),
    (4, ['densebox.apis', 'densebox.deploy', 'densebox.benchmark', 'densebox.setup_env',
         'densebox.tools_common', 'densebox.test_options', 'densebox.reco.cli',
         'densebox.reco.quickstart']),
    (5, ['densebox.cli', 'densebox.cli_support', 'densebox']),
]


def _modules() -> dict:
    """densebox module name -> its source file."""
    found = {}
    for path in PACKAGE.rglob('*.py'):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix('').parts)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        found['.'.join(parts)] = path
    return found


def import_graph() -> dict:
    """module -> set of densebox modules it imports (see the module docstring)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        is_package = path.name == '__init__.py'
        edges = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                edges.update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ''
                if node.level:
                    parts = name.split('.') if is_package else name.split('.')[:-1]
                    parts = parts[:len(parts) - (node.level - 1)]
                    base = '.'.join(parts + ([base] if base else []))
                for alias in node.names:
                    sub = f'{base}.{alias.name}'
                    if sub in modules:
                        edges.add(sub)
                    elif base in modules:
                        edges.add(base)
        edges.discard(name)
        graph[name] = edges
    return graph


def find_cycle(graph: dict):
    """One import cycle as a list of modules (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = 'open'
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 'open':
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        state[node] = 'done'
        stack.pop()
        return None

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return None


def layer_of(module: str) -> int:
    best = None
    for layer, prefixes in LAYERS:
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + '.'):
                if best is None or len(prefix) > len(best[1]):
                    best = (layer, prefix)
    assert best is not None, f'{module} is in no layer of tests/test_import_graph.py'
    return best[0]


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, 'import cycle: ' + ' -> '.join(cycle)


def test_no_module_imports_from_a_layer_above():
    upward = [f'{a} (layer {layer_of(a)}) -> {b} (layer {layer_of(b)})'
              for a, edges in sorted(import_graph().items()) for b in sorted(edges)
              if layer_of(b) > layer_of(a)]
    assert not upward, 'imports against the layers:\n' + '\n'.join(upward)


def test_registry_is_a_leaf():
    assert import_graph()['densebox.registry'] == set()


@pytest.mark.parametrize('source,cycle', [
    ({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}, ['a', 'b', 'c', 'a']),
    ({'a': {'b'}, 'b': set(), 'c': {'c2'}, 'c2': {'c'}}, ['c', 'c2', 'c']),
    ({'a': {'b'}, 'b': set()}, None),
])
def test_the_cycle_finder_finds_cycles(source, cycle):
    assert find_cycle(source) == cycle


def test_the_graph_sees_imports_inside_functions():
    """The graph is what the checks rely on: a function-level import is an edge."""
    graph = import_graph()
    # densebox.setup_env imports every registering package inside its function
    assert {'densebox.models', 'densebox.datasets', 'densebox.zoo'} <= graph['densebox.setup_env']
