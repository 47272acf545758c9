"""A copy of the repo's config, plus small objects whose content the tests control."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

TEST_PLAN = """\
# yaml-language-server: $schema=../../schemas/Plan.json
apiVersion: cplane/v1
kind: Plan
metadata:
  name: test-plan
  annotations: {annotations}
spec:
  displayName: Test Plan
  priceMonthly: {price}
  priceYearly: 190
  currency: USD
  monthlyCredits: 100
  maxSites: 2
  maxUsers: 3
  modules: [planner, writer]
  features: [ai_content]
"""

TEST_INDUSTRY = """\
# yaml-language-server: $schema=../../schemas/Industry.json
apiVersion: cplane/v1
kind: Industry
metadata:
  name: test-industry
spec:
  displayName: Test Industry
  sectors:
    - name: {sector}
      displayName: First Sector
      seedKeywords:
        - keyword: alpha one
          searchVolume: 100
        - keyword: alpha two
    - name: second
      displayName: Second Sector
      seedKeywords:
        - keyword: beta one
"""


class ConfigTree:
    def __init__(self, root: Path):
        self.root = root

    def write(self, relative: str, content: str) -> Path:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
        return path

    def remove(self, relative: str) -> None:
        (self.root / relative).unlink()

    def test_plan(self, price="19", annotations="{}") -> None:
        self.write("plans/test-plan.yaml", TEST_PLAN.format(price=price, annotations=annotations))

    def test_industry(self, sector="first") -> None:
        self.write("industries/test-industry.yaml", TEST_INDUSTRY.format(sector=sector))


@pytest.fixture
def config_tree(tmp_path, monkeypatch) -> ConfigTree:
    root = tmp_path / "config"
    shutil.copytree(REPO / "config", root)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CPLANE_SECRET_KEY", "test-secret-key")
    monkeypatch.delenv("CPLANE_ENV", raising=False)
    tree = ConfigTree(root)
    tree.test_plan()
    tree.test_industry()
    return tree
