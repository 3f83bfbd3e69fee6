"""A real QUIC peer (aioquic) for the live capture tests.

  quic_peer.py server HOST PORT CERT KEY   answers QUIC handshakes (ALPN h3) until killed
  quic_peer.py client HOST PORT            one connection: handshake, a ping, close; prints its local port
"""
import asyncio
import ssl
import sys

from aioquic.asyncio import connect, serve
from aioquic.quic.configuration import QuicConfiguration


async def server(host, port, cert, key):
    config = QuicConfiguration(is_client=False, alpn_protocols=["h3"])
    config.load_cert_chain(cert, key)
    await serve(host, port, configuration=config)
    await asyncio.Event().wait()


async def client(host, port):
    config = QuicConfiguration(is_client=True, alpn_protocols=["h3"], verify_mode=ssl.CERT_NONE)
    async with connect(host, port, configuration=config) as c:
        await c.ping()
        print(c._transport.get_extra_info("sockname")[1], flush=True)


if __name__ == "__main__":
    mode, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "server":
        asyncio.run(server(host, port, sys.argv[4], sys.argv[5]))
    else:
        asyncio.run(client(host, port))
