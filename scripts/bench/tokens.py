"""HS256 bearer tokens for `make bench`'s authenticated scenario (standard library only).

usage: tokens.py SECRET COUNT > tokens.txt
Line i (from 1) is the token of subject `bench-<i>`, valid for a day.
"""
import base64
import hashlib
import hmac
import json
import sys
import time


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> None:
    secret, count = sys.argv[1].encode(), int(sys.argv[2])
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    exp = int(time.time()) + 86_400
    for i in range(1, count + 1):
        claims = b64(json.dumps({"sub": f"bench-{i}", "exp": exp}).encode())
        signing_input = f"{header}.{claims}".encode()
        signature = b64(hmac.new(secret, signing_input, hashlib.sha256).digest())
        print(f"{header}.{claims}.{signature}")


if __name__ == "__main__":
    main()
