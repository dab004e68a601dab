"""The pure pieces of trust: nkeys and JWTs, invite tokens, grants and the audit chain.

Every mutated credential, token, grant or record must be refused with a typed error and
never crash (hypothesis: random flips and truncations, thousands of cases)."""

from __future__ import annotations

import re
import time
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from motes.errors import IntegrityError, MotesError, RequestError, Unauthorized
from motes.identity import KeyKind, SigningKey, fingerprint, seal
from motes.identity.audit import GENESIS, AuditBroken, chain_entry, entry_hash, verify_chain
from motes.identity.grants import RunTerms, allowed, check_terms, resource_matches, run_terms
from motes.identity.invites import decode_token, encode_token
from motes.identity.jwt import (
    NKEY_ACCOUNT,
    NKEY_USER,
    Permissions,
    creds_file,
    decode_jwt,
    nkey_public,
    nkey_seed,
    parse_nkey_public,
    parse_nkey_seed,
    read_creds,
    user_jwt,
)
from motes.identity.records import (
    GRANT_CONTEXT,
    open_app,
    open_assignment,
    open_node,
    seal_app,
    seal_assignment,
    seal_node,
)
from motes.trust.records import valid_grants
from motes.wire.messages import AppRecord, Inventory, NodeAssignment, NodeRecord
from motes.wire.trust import AuditEntry, Grant, Invite, MeshInfo, Principal

MESH = SigningKey.generate(KeyKind.MESH)
ACCOUNT = SigningKey.generate(KeyKind.MESH)
USER = SigningKey.generate(KeyKind.PERSON)


# --- nkeys and JWTs ------------------------------------------------------------------


def test_nkeys_spell_and_parse_back() -> None:
    pub = nkey_public(USER.public, NKEY_USER)
    assert pub.startswith("U") and len(pub) == 56
    assert parse_nkey_public(pub) == (NKEY_USER, USER.public)
    seed = nkey_seed(USER.seed, NKEY_USER)
    assert seed.startswith("SU") and parse_nkey_seed(seed) == USER.seed
    assert nkey_public(ACCOUNT.public, NKEY_ACCOUNT).startswith("A")


def test_a_user_jwt_verifies_against_its_account_and_carries_its_limits() -> None:
    perms = Permissions(pub_allow=("a.>",), sub_allow=("_I.x.>",))
    token = user_jwt(
        ACCOUNT,
        USER.public,
        account=nkey_public(ACCOUNT.public, NKEY_ACCOUNT),
        name="u",
        permissions=perms,
        expires=time.time() + 60,
    )
    got = decode_jwt(token, issuers=(ACCOUNT.public,))
    assert got.subject == nkey_public(USER.public, NKEY_USER)
    # Every limit written out: an omitted one would mean zero to nats-server.
    assert (got.nats["subs"], got.nats["data"], got.nats["payload"]) == (-1, -1, -1)
    assert got.nats["pub"]["allow"] == ["a.>"]
    with pytest.raises(Unauthorized, match="issuer this mesh does not know"):
        decode_jwt(token, issuers=(MESH.public,))
    stale = user_jwt(
        ACCOUNT, USER.public, account="A", name="u", permissions=perms, expires=time.time() - 1
    )
    with pytest.raises(Unauthorized, match="expired"):
        decode_jwt(stale)


def test_a_creds_file_reads_back() -> None:
    token = user_jwt(
        ACCOUNT, USER.public, account="A", name="u", permissions=Permissions(), expires=None
    )
    jwt, key = read_creds(creds_file(token, USER))
    assert jwt == token and key.public == USER.public
    with pytest.raises(Unauthorized):
        read_creds("not a creds file")


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_mutated_jwts_and_creds_are_refused_never_crash(data: st.DataObject) -> None:
    token = user_jwt(
        ACCOUNT, USER.public, account="A", name="u", permissions=Permissions(), expires=None
    )
    raw = bytearray(token.encode())
    at = data.draw(st.integers(0, len(raw) - 1))
    if data.draw(st.booleans()):
        mutated = bytes(raw[:at])
    else:
        raw[at] = data.draw(st.sampled_from(b"ABCxyz019-_.=+/"))
        mutated = bytes(raw)
    text = mutated.decode(errors="replace")
    try:
        got = decode_jwt(text, issuers=(ACCOUNT.public,))
    except Unauthorized:
        pass
    else:  # base64 padding bits can change without changing the bytes
        assert got.subject == nkey_public(USER.public, NKEY_USER)
    try:
        read_creds(creds_file(text, USER)[: data.draw(st.integers(0, 2000))])
    except MotesError:
        pass


# --- invites -------------------------------------------------------------------------


def _invite(expires: float) -> Invite:
    mesh = MeshInfo(id=MESH.id, key=MESH.public, account="A", servers=["nats://127.0.0.1:1"])
    return Invite(id="i1", mesh=mesh, kind="person", name="ada", expires=expires, jwt="j")


def test_an_invite_token_round_trips_and_names_its_mesh() -> None:
    token = encode_token(MESH, _invite(time.time() + 60))
    got = decode_token(token)
    assert got.mesh.id == MESH.id and got.name == "ada"


def test_expired_tampered_and_foreign_tokens_each_say_why() -> None:
    with pytest.raises(Unauthorized, match="expired"):
        decode_token(encode_token(MESH, _invite(time.time() - 5)))
    token = encode_token(MESH, _invite(time.time() + 60))
    flipped = token[:-10] + ("a" if token[-10] != "a" else "b") + token[-9:]
    with pytest.raises(Unauthorized, match="damaged or was tampered"):
        decode_token(flipped)
    impostor = SigningKey.generate(KeyKind.MESH)  # signs an invite naming another mesh
    with pytest.raises(Unauthorized, match="not signed by its mesh"):
        decode_token(encode_token(impostor, _invite(time.time() + 60)))
    with pytest.raises(Unauthorized, match="not a Motes invite"):
        decode_token("hello")


@settings(max_examples=2000, deadline=None)
@given(st.data())
def test_mutated_tokens_are_refused_never_crash(data: st.DataObject) -> None:
    token = encode_token(MESH, _invite(time.time() + 600))
    body = list(token)
    if data.draw(st.booleans()):
        mutated = token[: data.draw(st.integers(0, len(token) - 1))]
    else:
        at = data.draw(st.integers(len("motes-invite-1:"), len(token) - 1))
        body[at] = data.draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz234567"))
        mutated = "".join(body)
    try:
        got = decode_token(mutated)
    except Unauthorized:
        return
    assert got == decode_token(token)  # base32 tail bits can change without changing bytes


# --- grants --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "resource", "ok"),
    [
        ("*", "shop.price", True),
        ("shop", "shop.price", True),
        ("shop.*", "shop.price", True),
        ("shop.price", "shop.cost", False),
        ("shop", "store.price", False),
        ("shop.>", "shop", False),
        ("shop.>", "shop.a", True),
    ],
)
def test_resource_patterns(pattern: str, resource: str, ok: bool) -> None:
    assert resource_matches(pattern, resource) is ok


def _principal(pid: str, key: SigningKey, owner: str = "", revoked: float = 0.0) -> Principal:
    kind = "node" if pid.startswith("n") else "person"
    return Principal(id=pid, kind=kind, name=pid, key=key.public, owner=owner, revoked_at=revoked)


def test_only_grants_from_the_mesh_admins_or_a_nodes_owner_count() -> None:
    admin_key, person_key, owner_key = (SigningKey.generate(KeyKind.PERSON) for _ in range(3))
    principals = {
        "padmin": _principal("padmin", admin_key),
        "pada": _principal("pada", person_key),
        "powner": _principal("powner", owner_key),
        "nbox": _principal("nbox", SigningKey.generate(KeyKind.NODE), owner="powner"),
    }

    def g(gid: str, principal: str, action: str, resource: str, by: SigningKey) -> bytes:
        grant = Grant(id=gid, principal=principal, action=action, resource=resource)  # type: ignore[arg-type]
        return seal(by, grant, context=GRANT_CONTEXT)

    signed = [
        g("1", "padmin", "admin", "*", MESH),
        g("2", "pada", "call", "shop", admin_key),  # by an admin: counts
        g("3", "pada", "deploy", "shop", person_key),  # by herself: does not
        g("4", "pada", "run", "nbox", owner_key),  # by the node's owner: counts
        g("5", "pada", "run", "nother", owner_key),  # a node the owner does not own
        b"\x93garbage",
    ]
    grants = valid_grants(signed, principals, fingerprint(MESH.public))
    assert sorted(x.id for x in grants) == ["1", "2", "4"]
    assert allowed(grants, "pada", "call", "shop.price") is not None
    assert allowed(grants, "pada", "deploy", "shop") is None
    assert allowed(grants, "padmin", "deploy", "anything") is not None  # admin implies all
    revoked = {**principals, "pada": _principal("pada", person_key, revoked=1.0)}
    assert [x.id for x in valid_grants(signed, revoked, fingerprint(MESH.public))] == ["1"]


@settings(max_examples=1500, deadline=None)
@given(st.data())
def test_mutated_grants_are_never_accepted(data: st.DataObject) -> None:
    admin = SigningKey.generate(KeyKind.PERSON)
    principals = {"padmin": _principal("padmin", admin), "pada": _principal("pada", USER)}
    grant = Grant(id="2", principal="pada", action="call", resource="shop")
    raw = bytearray(seal(MESH, grant, context=GRANT_CONTEXT))
    at = data.draw(st.integers(0, len(raw) - 1))
    raw[at] ^= data.draw(st.integers(1, 255))
    got = valid_grants([bytes(raw)], principals, fingerprint(MESH.public))
    assert got in ([], [grant])  # refused, or a flip msgpack reads as the same grant


# --- the audit chain -----------------------------------------------------------------


def _log(n: int, author: SigningKey = MESH) -> list[bytes]:
    raws: list[bytes] = []
    prev = GENESIS
    for seq in range(1, n + 1):
        statement = seal(USER, {"type": "note1", "n": seq}, context="note1")
        entry = AuditEntry(
            seq=seq,
            prev=prev,
            at=time.time(),
            kind="grant",
            actor="padmin",
            subject=f"p{seq}",
            statement=statement,
        )
        raw = chain_entry(author, entry)
        raws.append(raw)
        prev = entry_hash(raw)
    return raws


AUTHORITIES = {fingerprint(MESH.public)}
SIGNERS = {fingerprint(USER.public): "pada"}


def test_an_untouched_log_verifies() -> None:
    checked = verify_chain(_log(5), authorities=AUTHORITIES, signers=SIGNERS)
    assert [e.seq for e in checked.entries] == [1, 2, 3, 4, 5]


def _edited(raws: list[bytes], index: int) -> list[bytes]:
    envelope = msgspec.msgpack.decode(raws[index])
    body = msgspec.msgpack.decode(envelope["body"])
    body["subject"] = "someone else"
    envelope["body"] = msgspec.msgpack.encode(body)
    return [*raws[:index], msgspec.msgpack.encode(envelope), *raws[index + 1 :]]


@pytest.mark.parametrize(
    ("tamper", "index", "reason"),
    [
        (lambda r: _edited(r, 2), 2, "edited or forged"),
        (lambda r: r[:2] + r[3:], 2, "dropped or moved"),
        (lambda r: [r[0], r[2], r[1], *r[3:]], 1, "dropped or moved"),
        (lambda r: r[:3] + _log(5, SigningKey.generate(KeyKind.MESH))[3:], 3, "does not keep"),
    ],
    ids=["edited", "dropped", "swapped", "unknown-key"],
)
def test_a_tampered_log_names_the_first_entry_that_breaks(
    tamper: object, index: int, reason: str
) -> None:
    raws = tamper(_log(5))  # type: ignore[operator]
    with pytest.raises(AuditBroken, match=reason) as info:
        verify_chain(raws, authorities=AUTHORITIES, signers=SIGNERS)
    assert info.value.index == index


def test_a_statement_by_a_key_the_mesh_does_not_know_breaks_the_log() -> None:
    with pytest.raises(AuditBroken, match="does not know"):
        verify_chain(_log(3), authorities=AUTHORITIES, signers={})


def test_integrity_errors_are_fatal_not_request_errors() -> None:
    assert issubclass(AuditBroken, IntegrityError)


# --- signed records ------------------------------------------------------------------

NODE = SigningKey.generate(KeyKind.NODE)
_RECORDS = {
    "node": (
        lambda: seal_node(
            NODE,
            NodeRecord(
                id=NODE.id,
                name="n",
                public_key=NODE.public,
                host="h",
                pid=1,
                inventory=Inventory(cpus=2, memory_mb=1024, arch="x86_64", os="linux"),
            ),
        ),
        open_node,
    ),
    "app": (
        lambda: seal_app(USER, AppRecord(name="shop", digest="sha256:00", module="m", motes=[])),
        open_app,
    ),
    "assignment": (
        lambda: seal_assignment(NODE, NodeAssignment(node="n1", epoch=3, instances=[])),
        open_assignment,
    ),
}


@settings(max_examples=1500, deadline=None)
@given(st.sampled_from(sorted(_RECORDS)), st.data())
def test_mutated_signed_records_are_refused_never_crash(kind: str, data: st.DataObject) -> None:
    make, open_record = _RECORDS[kind]
    original = make()
    raw = bytearray(original)
    if data.draw(st.booleans()):
        at = data.draw(st.integers(0, len(raw) - 1))
        raw[at] ^= data.draw(st.integers(1, 255))
    else:
        del raw[data.draw(st.integers(0, len(raw) - 1)) :]
    try:
        got = open_record(bytes(raw))
    except IntegrityError:
        return
    # Accepted only if msgpack reads the flip as the very same signed record.
    assert got == open_record(original)


# --- the terms of run grants ----------------------------------------------------------


def _run(gid: str, resource: str, at: float, **options: Any) -> Grant:
    return Grant(id=gid, principal="pada", action="run", resource=resource, issued_at=at, **options)


def test_run_terms_come_from_the_nodes_own_grant_over_every_nodes_then_the_newest() -> None:
    everywhere = _run("1", "*", 1.0, budget={"instances": 4.0})
    newer_everywhere = _run("2", "*", 2.0, native=True)
    here = _run("3", "nbox", 0.5, budget={"instances": 1.0, "memory_mb": 256.0})
    other = Grant(id="4", principal="pbob", action="run", resource="nbox", native=True)

    assert run_terms([everywhere], "pada", "nbox") == RunTerms(grant="1", instances=4)
    assert run_terms([everywhere, newer_everywhere], "pada", "nbox") == RunTerms(
        grant="2", native=True
    )
    assert run_terms([everywhere, here, newer_everywhere, other], "pada", "nbox") == RunTerms(
        grant="3", instances=1, memory_mb=256
    )
    assert run_terms([here, other], "pada", "nother") is None
    expired = _run("5", "nbox", 0.0, native=True, until=10.0)
    assert run_terms([expired], "pada", "nbox", now=11.0) is None


@pytest.mark.parametrize(
    ("grant", "error"),
    [
        (_run("1", "*", 0, budget={"cpu_s": 5.0}), "no run budget 'cpu_s'"),
        (_run("1", "*", 0, budget={"instances": 1.5}), "instances=1.5: it must be a whole"),
        (_run("1", "*", 0, budget={"memory_mb": 0.0}), "memory_mb=0.0: it must be a whole"),
        (_run("1", "*", 0, budget={"cpu_s_per_day": -1.0}), "it must be a number above 0"),
        (Grant(id="1", principal="p", action="call", native=True), "native is a term of `run`"),
        (Grant(id="1", principal="p", action="call", budget={"x": 1.0}), "budgets are terms"),
    ],
)
def test_bad_run_terms_are_refused_with_what_was_wrong(grant: Grant, error: str) -> None:
    with pytest.raises(RequestError, match=re.escape(error)):
        check_terms(grant)
    check_terms(_run("ok", "*", 0, native=True, budget={"cpu_s_per_day": 0.5, "instances": 2.0}))


def test_native_is_part_of_what_the_grant_signs() -> None:
    owner = SigningKey.generate(KeyKind.PERSON)
    principals = {
        "pada": _principal("pada", USER),
        "powner": _principal("powner", owner),
        "nbox": _principal("nbox", SigningKey.generate(KeyKind.NODE), owner="powner"),
    }
    raw = seal(owner, _run("1", "nbox", 0.0), context=GRANT_CONTEXT)
    envelope = msgspec.msgpack.decode(raw)
    body = msgspec.msgpack.decode(envelope["body"])
    body["native"] = True
    envelope["body"] = msgspec.msgpack.encode(body)
    forged = msgspec.msgpack.encode(envelope)

    mesh = fingerprint(MESH.public)
    assert [g.native for g in valid_grants([raw], principals, mesh)] == [False]
    assert valid_grants([forged], principals, mesh) == []
