import Foundation
import NIOCore
import Testing

@testable import Tulip

#if canImport(Glibc)
import Glibc
#endif

/// A CA, a server certificate for localhost/127.0.0.1 signed by it, and a Python client helper,
/// made at test time in a temporary directory.
struct TLSFixture: Sendable {
    let directory: String
    var ca: String { self.directory + "/ca.pem" }
    var certificate: String { self.directory + "/server.pem" }
    var key: String { self.directory + "/server.key" }
    /// A CA that signed nothing the server presents: trusting only it must fail the handshake.
    var otherCA: String { self.directory + "/other-ca.pem" }

    init() throws {
        var template = Array("/tmp/tulip-tls-server-XXXXXX".utf8CString)
        let made = template.withUnsafeMutableBufferPointer { mkdtemp($0.baseAddress!) }
        guard made != nil else { throw TulipError.invalidArgument("mkdtemp failed") }
        self.directory = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        let script = """
            set -e; cd '\(self.directory)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=Tulip-Test-CA 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server.key -out server.csr -subj /CN=localhost 2>/dev/null
            printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext 2>/dev/null
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj /CN=Other-CA 2>/dev/null
            """
        guard system(script) == 0 else { throw TulipError.invalidArgument("openssl CLI failed") }
        let helper = """
            import os, socket, ssl, subprocess, sys, time
            mode, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]
            def tls(version=None):
                ctx = ssl.create_default_context(cafile=ca)
                if version == '1.2':
                    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
                elif version == '1.3':
                    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
                s = socket.create_connection(('127.0.0.1', port), timeout=10)
                return ctx.wrap_socket(s, server_hostname='localhost')
            def echo(s, n):
                data = os.urandom(n)
                got = bytearray()
                for start in range(0, n, 65536):
                    s.sendall(data[start:start + 65536])
                    while len(got) < min(n, start + 65536):
                        chunk = s.recv(65536)
                        if not chunk:
                            return False
                        got += chunk
                return bytes(got) == data
            if mode == 'echo':
                version = sys.argv[4]
                s = tls(version)
                assert s.version() == ('TLSv1.2' if version == '1.2' else 'TLSv1.3'), s.version()
                assert echo(s, 1 << 20)
                s.unwrap()
                s.close()
            elif mode == 'sclient':
                flag, alpn = sys.argv[4], sys.argv[5]
                p = subprocess.Popen(['openssl', 's_client', '-connect', '127.0.0.1:%d' % port, flag,
                                      '-alpn', alpn, '-CAfile', ca, '-servername', 'localhost', '-verify_return_error'],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
                p.stdin.write(b'hello-tulip\\n'); p.stdin.flush()
                out = b''
                deadline = time.time() + 10
                os.set_blocking(p.stdout.fileno(), False)
                while time.time() < deadline and out.count(b'hello-tulip') < 1:
                    try:
                        chunk = p.stdout.read()
                    except BlockingIOError:
                        chunk = None
                    if chunk:
                        out += chunk
                    time.sleep(0.05)
                p.kill(); p.wait()
                text = out.decode(errors='replace')
                assert ('ALPN protocol: ' + alpn) in text, text
                assert 'Verify return code: 0' in text, text
                assert 'hello-tulip' in text.split('---')[-1], text
            elif mode == 'sink':
                expected = open(sys.argv[4], 'rb').read()
                s = tls()
                got = bytearray()
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    got += chunk
                assert bytes(got) == expected, (len(got), len(expected))
            elif mode == 'silent':
                s = socket.create_connection(('127.0.0.1', port), timeout=10)
                start = time.time()
                assert s.recv(1) == b''
                assert time.time() - start < 5
            elif mode == 'starttls-server':
                # TLS-5 peer: exactly HELLO in plaintext, then a TLS server that echoes until EOF.
                srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)
                print(srv.getsockname()[1], flush=True)
                conn, _ = srv.accept(); conn.settimeout(10)
                first = b''
                while len(first) < 6:
                    first += conn.recv(6 - len(first))
                assert first == b'HELLO\\n', first
                sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                sctx.load_cert_chain(sys.argv[4], sys.argv[5])
                s = sctx.wrap_socket(conn, server_side=True)
                while True:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    s.sendall(chunk)
                s.unwrap()
            elif mode == 'mute-tls-server':
                # TLS-9 peer: finishes the handshake, then neither reads nor answers close_notify.
                srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(2)
                print(srv.getsockname()[1], flush=True)
                sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                sctx.load_cert_chain(sys.argv[4], sys.argv[5])
                kept = []
                for _ in range(2):
                    conn, _ = srv.accept()
                    kept.append(sctx.wrap_socket(conn, server_side=True))
                time.sleep(3)
            elif mode == 'starttls-client':
                # TLS-4 peer: the ClientHello follows STARTTLS before OK was read, in a later segment.
                s = socket.create_connection(('127.0.0.1', port), timeout=10)
                s.sendall(b'plain\\n')
                assert s.recv(6) == b'plain\\n'
                s.sendall(b'STARTTLS\\r\\n')
                time.sleep(0.1)
                ctx = ssl.create_default_context(cafile=ca)
                incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
                tls = ctx.wrap_bio(incoming, outgoing, server_hostname='localhost')
                def pump():
                    data = outgoing.read()
                    if data:
                        s.sendall(data)
                try:
                    tls.do_handshake()
                except ssl.SSLWantReadError:
                    pass
                pump()
                ok = b''
                while len(ok) < 4:
                    ok += s.recv(4 - len(ok))
                assert ok == b'OK\\r\\n', ok
                while True:
                    try:
                        tls.do_handshake()
                        break
                    except ssl.SSLWantReadError:
                        pump()
                        incoming.write(s.recv(65536))
                pump()
                tls.write(b'secret'); pump()
                got = b''
                while len(got) < 6:
                    try:
                        got += tls.read(65536)
                    except ssl.SSLWantReadError:
                        incoming.write(s.recv(65536))
                assert got == b'secret', got
                s.close()
            elif mode == 'garbage':
                good = tls()
                bad = socket.create_connection(('127.0.0.1', port), timeout=10)
                bad.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n' * 10)
                try:
                    while bad.recv(4096):
                        pass
                except ConnectionResetError:
                    pass
                assert echo(good, 4096)
                good.close()
            """
        let file = fopen(self.directory + "/client.py", "w")
        fputs(helper, file)
        fclose(file)
    }

    func client(_ arguments: String) -> Int32 {
        system("python3 '\(self.directory)/client.py' \(arguments) 1>&2")
    }

    func remove() { _ = system("rm -rf '\(self.directory)'") }

    /// `openssl s_server` with this fixture's certificate, reversing each line it receives
    /// (`-rev`), for one connection.
    func opensslServer() throws -> PeerProcess {
        try PeerProcess([
            "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", self.certificate, "-key", self.key,
            "-rev", "-naccept", "1",
        ])
    }

    /// A Python server mode of the helper script; it prints its port first.
    func pythonServer(_ mode: String) throws -> PeerProcess {
        try PeerProcess([
            "python3", self.directory + "/client.py", mode, "0", self.ca, self.certificate, self.key,
        ])
    }
}

/// A peer process whose standard output is read line by line (blocking: call off the loop).
final class PeerProcess: @unchecked Sendable {
    // @unchecked Sendable: the process is started in init; reads happen on one thread at a time.
    private let process = Process()
    private let output = Pipe()

    init(_ arguments: [String]) throws {
        self.process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        self.process.arguments = arguments
        self.process.standardOutput = self.output
        try self.process.run()
    }

    /// The next line of output without its newline; nil at EOF.
    func readLine() -> String? {
        var bytes: [UInt8] = []
        var byte: UInt8 = 0
        let fd = self.output.fileHandleForReading.fileDescriptor
        while read(fd, &byte, 1) == 1 {
            if byte == UInt8(ascii: "\n") { return String(decoding: bytes, as: UTF8.self) }
            bytes.append(byte)
        }
        return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self)
    }

    /// Reads lines until one gives the listening port: `ACCEPT host:port` (s_server) or a bare
    /// number (the Python servers).
    func port() throws -> Int {
        while let line = self.readLine() {
            if let port = Int(line) { return port }
            if line.hasPrefix("ACCEPT "), let port = line.split(separator: ":").last.flatMap({ Int($0) }) {
                return port
            }
        }
        throw TulipError.invalidArgument("peer exited before it listened")
    }

    /// Waits for the process to exit and returns its status.
    func wait() -> Int32 {
        self.process.waitUntilExit()
        return self.process.terminationStatus
    }

    func terminate() {
        if self.process.isRunning { self.process.terminate() }
    }
}
