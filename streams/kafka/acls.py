"""Who may do what on the Kafka cluster (pure): the ACL plan of a deployment with SASL.

- **workers** (and the alerter, the writer): read the shop topics and their own consumer
  groups (``C2M_APP_ID`` and ``C2M_APP_ID-...``), write the pipeline's topics (``c2m.``:
  dead letters, ``c2m.sink``; read ``c2m.sink``: the writer), write the factory topics and
  create each factory's topic on its first alert (prefix ``factory.``);
- **shops**: write their topics (prefix ``shop.``) and nothing else;
- **factory F**: read its own topics and use its own consumer groups, both under the prefix
  ``factory.<component of F>.`` (``streams.core.tenancy``: no other factory's topic or
  group starts with it), and nothing else.

``deploy/kafka/generate.py`` renders this plan into the compose stack's init script;
``c2m kafka acls --factory F`` prints the commands for one more factory.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Literal

from streams.core.tenancy import component, prefix

Resource = Literal["topic", "group", "cluster"]


@dataclass(frozen=True, slots=True)
class Acl:
    principal: str  # the SASL user name
    operations: tuple[str, ...]
    resource: Resource
    name: str
    prefixed: bool = False


def factory_user(factory_id: str) -> str:
    """The SASL user of a factory: ``factory-<component>``."""
    return f"factory-{component(factory_id)}"


def worker_acls(user: str, app_id: str) -> list[Acl]:
    return [
        Acl(user, ("Read", "Describe"), "topic", "shop.", prefixed=True),
        Acl(user, ("Read", "Write", "Describe"), "topic", "c2m.", prefixed=True),
        Acl(user, ("Write", "Describe", "Create"), "topic", "factory.", prefixed=True),
        Acl(user, ("Read", "Describe"), "group", app_id, prefixed=True),
    ]


def shop_acls(user: str) -> list[Acl]:
    return [Acl(user, ("Write", "Describe"), "topic", "shop.", prefixed=True)]


def factory_acls(factory_id: str, user: str | None = None) -> list[Acl]:
    who = user or factory_user(factory_id)
    return [
        Acl(who, ("Read", "Describe"), "topic", prefix(factory_id), prefixed=True),
        Acl(who, ("Read", "Describe"), "group", prefix(factory_id), prefixed=True),
    ]


def acl_command(acl: Acl, bootstrap: str = '"$BOOTSTRAP"', config: str = '"$ADMIN"') -> str:
    """The ``kafka-acls.sh`` line that adds ``acl``."""
    ops = " ".join(f"--operation {op}" for op in acl.operations)
    where = {"topic": f"--topic {shlex.quote(acl.name)}",
             "group": f"--group {shlex.quote(acl.name)}", "cluster": "--cluster"}[acl.resource]
    pattern = " --resource-pattern-type prefixed" if acl.prefixed else ""
    return (f"kafka-acls.sh --bootstrap-server {bootstrap} --command-config {config} --add "
            f"--allow-principal {shlex.quote('User:' + acl.principal)} {ops} {where}{pattern}")


def user_command(user: str, password_var: str, mechanism: str = "SCRAM-SHA-512",
                 bootstrap: str = '"$BOOTSTRAP"', config: str = '"$ADMIN"') -> str:
    """The ``kafka-configs.sh`` line that sets a SCRAM user's password from a variable."""
    return (f"kafka-configs.sh --bootstrap-server {bootstrap} --command-config {config} "
            f'--alter --add-config "{mechanism}=[password=${{{password_var}}}]" '
            f"--entity-type users --entity-name {shlex.quote(user)}")
