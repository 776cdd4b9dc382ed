"""The guide's configuration block (docs/guide/agent.md) names every key the agent takes, with its default."""
import re
import tomllib

from agent_helpers import ROOT
from kernelpilot.agent import config as C


def test_guide_config_block_has_every_key_and_its_default():
    text = (ROOT / "docs/guide/agent.md").read_text().split("## Configuration", 1)[1]
    doc = tomllib.loads(re.search(r"```toml\n(.*?)```", text, re.S)[1])
    C.validate(doc, "the guide's block")  # it is a config the agent accepts
    keys = {(s, k) for s, ks in C.SCHEMA.items() for k in ks if k != "enabled"}  # "each section also takes enabled"
    assert {(s, k) for s, ks in doc.items() for k in ks} == keys
    example = {("agent", "log")}  # a path for the service, not the default
    assert {(s, k): v for s, ks in doc.items() for k, v in ks.items() if (s, k) not in example} == \
        {(s, k): C.SCHEMA[s][k][1] for s, k in keys - example}
