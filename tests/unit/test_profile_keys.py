"""Reader profile keys: random, URL-safe, kept as a digest, named in logs by a short id."""

from core.profile_keys import KEY_BYTES, could_be_key, key_digest, new_key, same_digest, short_id


def test_keys_are_random_url_safe_and_at_least_128_bits():
    keys = {new_key() for _ in range(100)}
    assert len(keys) == 100 and KEY_BYTES * 8 >= 128
    assert all(could_be_key(key) and len(key) >= 22 for key in keys)
    assert not any(could_be_key(text) for text in ("", "short", "a/b" * 10, "../" * 10, "k" * 21, "k" * 129))


def test_the_stored_digest_and_the_short_id_do_not_show_the_key():
    key = new_key()
    digest = key_digest(key)
    assert len(digest) == 64 and key not in digest and digest == key_digest(key)
    assert same_digest(digest, key_digest(key)) and not same_digest(digest, key_digest(new_key()))
    assert len(short_id(digest)) == 8 and short_id(digest) not in digest and short_id(digest) == short_id(digest)
    assert short_id(digest) != short_id(key_digest(new_key()))


def test_a_new_key_is_192_bits_in_32_characters():
    assert KEY_BYTES == 24 and {len(new_key()) for _ in range(20)} == {32}
