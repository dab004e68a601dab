"""Trust: the mesh's keys, its authority (admissions, grants, revocations, credentials,
the audit log), and the client side of asking it. Pure pieces (JWTs, invites, grants,
the audit chain) live in ``identity``; the permissions themselves in ``wire.acl``."""
