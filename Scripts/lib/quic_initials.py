"""QUIC peers (aioquic) for Scripts/make-quic-capture.

  quic_initials.py server HOST CERT KEY [retry]   answers QUIC handshakes on HOST:443 (ALPN h3) until killed;
                                                  with `retry`, every new connection is sent a Retry first
  quic_initials.py client HOST SNI LOCAL_PORT N_ALPN
      one connection from LOCAL_PORT: the ClientHello offers h3 and N_ALPN more protocol names (enough of
      them make it span two Initial packets), then a handshake, a ping and a close
"""
import asyncio
import ssl
import sys

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration


async def server(host, cert, key, retry):
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    config.load_cert_chain(cert, key)
    await serve(host, 443, configuration=config, retry=retry)
    await asyncio.Event().wait()


async def client(host, sni, local_port, extra):
    names = ["h3"] + [f"agent-protocol-{i:03d}" for i in range(extra)]
    config = QuicConfiguration(is_client=True, alpn_protocols=names, server_name=sni, verify_mode=ssl.CERT_NONE)
    async with connect(host, 443, configuration=config, local_port=local_port) as c:
        await c.ping()


if __name__ == "__main__":
    mode = sys.argv[1]
    if mode == "server":
        asyncio.run(server(sys.argv[2], sys.argv[3], sys.argv[4], len(sys.argv) > 5 and sys.argv[5] == "retry"))
    else:
        asyncio.run(client(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
