"""A client that sends one request on a kept-alive connection and then
waits: prints how many seconds passed until the server closed it, or
"open" after LIMIT seconds. Usage: idle_client.py HOST PORT LIMIT"""

import socket
import sys
import time

host, port, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
connection = socket.create_connection((host, port))
connection.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
started = time.time()
connection.settimeout(limit)
try:
    while connection.recv(4096):
        pass
    print(round(time.time() - started, 2))
except socket.timeout:
    print("open")
