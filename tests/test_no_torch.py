"""The runtime never imports torch: every module under edge loads with torch made unimportable."""

import subprocess
import sys
import textwrap


def test_edge_imports_without_torch():
    code = textwrap.dedent("""
        import importlib, pkgutil, sys

        class BlockTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError("torch is blocked in this test")
                return None

        sys.meta_path.insert(0, BlockTorch())
        import edge
        names = [m.name for m in pkgutil.walk_packages(edge.__path__, "edge.")]
        for name in names:
            importlib.import_module(name)
        assert "torch" not in sys.modules
        print(len(names))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip()) >= 15  # every module was really imported
