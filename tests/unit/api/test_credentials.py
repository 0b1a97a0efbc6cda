"""hwbkptd.api.credentials (issue 12): the token file, bearer tokens, certificate names."""

from __future__ import annotations

import hashlib

import pytest

from hwbkptd.api.credentials import (
    TokenFileError,
    bearer_token,
    certificate_name,
    hash_token,
    metadata_value,
    parse_token_file,
)


def test_item1_tokens_are_looked_up_by_their_digest() -> None:
    digest = hashlib.sha256(b"s3cret").hexdigest()
    assert hash_token("s3cret\n") == digest
    book = parse_token_file(f"# ci runners\n\nci {digest}\nbob {hash_token('other')}\n")
    assert book.name_of("s3cret") == "ci"
    assert book.name_of("other") == "bob"
    assert book.name_of("s3cre") is None
    assert book.name_of(digest) is None  # the file's content is not a token


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ci s3cret\n", "line 1: expected NAME and the token's SHA-256"),
        (f"ci {'A' * 64}\n", "line 1"),
        (f"a {'0' * 64}\nb {'0' * 64}\n", "listed twice"),
    ],
)
def test_item1_a_bad_token_file_is_refused(text: str, message: str) -> None:
    with pytest.raises(TokenFileError) as info:
        parse_token_file(text)
    assert message in str(info.value)


def test_item1_metadata_bearer_and_certificate_names() -> None:
    md = (("x", "1"), ("authorization", "Bearer  abc "), ("hwbkpt-session-token", b"t"))
    assert metadata_value(md, "hwbkpt-session-token") == "t"
    assert metadata_value(None, "x") == ""
    assert bearer_token(md) == "abc"
    assert bearer_token((("authorization", "Basic xyz"),)) == ""
    assert bearer_token(()) is None
    cert = {"x509_pem_cert": [b"PEM"], "x509_common_name": [b"cn"]}
    assert certificate_name(cert) == "cn"
    assert certificate_name({**cert, "x509_subject_alternative_name": [b"san", b"2"]}) == "san"
    assert certificate_name({"x509_common_name": [b"cn"]}) == ""  # not a verified cert
