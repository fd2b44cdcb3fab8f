import NIOConcurrencyHelpers
import NIOCore
import Testing
import TulipTLS

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
}

@Suite(.timeLimit(.minutes(1)))
struct TLSServerTests {
    private static func echo() -> RecordingProtocol {
        let p = RecordingProtocol()
        p.onData = { data, transport in try transport.write(data) }
        return p
    }

    @Test func cs1HandshakeTimeoutWithoutSSLIsRefusedAndCs22NonPositiveToo() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let context = try OpenSSLContext.server(certificateChain: fixture.certificate, privateKey: fixture.key)
        let messages = try await withLoop { loop in
            try loop.runUntilComplete { () -> [String] in
                var messages: [String] = []
                for (ssl, timeout) in [(nil, TimeAmount.seconds(1)), (context, .zero), (context, .seconds(-1))] {
                    do {
                        _ = try await loop.createServer(
                            host: "127.0.0.1",
                            port: 0,
                            ssl: ssl,
                            sslHandshakeTimeout: timeout
                        ) {
                            Self.echo()
                        }
                        messages.append("created")
                    } catch let error as TulipError {
                        messages.append("\(error.code):\(error.message)")
                    }
                }
                return messages
            }
        }
        #expect(messages[0] == "invalidArgument:ssl_handshake_timeout is only meaningful with ssl")
        #expect(messages[1].hasPrefix("invalidArgument:ssl_handshake_timeout should be a positive number"))
        #expect(messages[2].hasPrefix("invalidArgument:ssl_handshake_timeout should be a positive number"))
    }

    /// Runs `clients` against a TLS echo server; returns their exit codes and the protocols made.
    private func serve(
        _ fixture: TLSFixture,
        alpn: [String] = [],
        timeout: TimeAmount? = nil,
        clients: [(mode: String, extra: String)]
    ) async throws -> (codes: [Int32], protocols: [RecordingProtocol]) {
        let context = try OpenSSLContext.server(
            certificateChain: fixture.certificate,
            privateKey: fixture.key,
            alpn: alpn
        )
        let made = NIOLockedValueBox<[RecordingProtocol]>([])
        let codes = try await withLoop { loop in
            try loop.runUntilComplete { () -> [Int32] in
                let server = try await loop.createServer(
                    host: "127.0.0.1",
                    port: 0,
                    ssl: context,
                    sslHandshakeTimeout: timeout
                ) {
                    let p = Self.echo()
                    made.withLockedValue { $0.append(p) }
                    return p
                }
                let port = server.sockets[0].localAddress.port ?? 0
                var codes: [Int32] = []
                for arguments in clients {
                    let line = "\(arguments.mode) \(port) '\(fixture.ca)' \(arguments.extra)"
                    codes.append(try await loop.runInExecutor { fixture.client(line) })
                }
                server.close()
                await server.waitClosed()
                return codes
            }
        }
        return (codes, made.withLockedValue { $0 })
    }

    @Test func pythonSSLClientEchoesOneMebibyteOverTLS12AndTLS13() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let (codes, protocols) = try await serve(fixture, clients: [("echo", "1.2"), ("echo", "1.3")])
        #expect(codes == [0, 0])
        #expect(protocols.count == 2)
        let transport = try #require(protocols.first?.transport)
        #expect(transport.canWriteEOF == false)
        #expect(transport.supportsNativeSendfile == false)
        #expect(transport.extraInfo("ssl_version") as? String == "TLSv1.2")
        #expect(transport.extraInfo("cipher") as? String != nil)
        #expect(protocols.last?.transport?.extraInfo("ssl_version") as? String == "TLSv1.3")
    }

    @Test func opensslSClientEchoesWithALPNOverTLS12AndTLS13() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let (codes, protocols) = try await serve(
            fixture,
            alpn: ["h2", "http/1.1"],
            clients: [("sclient", "-tls1_2 http/1.1"), ("sclient", "-tls1_3 h2")]
        )
        #expect(codes == [0, 0])
        #expect(protocols.first?.transport?.extraInfo("alpn_protocol") as? String == "http/1.1")
        #expect(protocols.last?.transport?.extraInfo("alpn_protocol") as? String == "h2")
    }

    @Test func sendfileOverTLSTakesTheFallbackAndFallbackFalseIsRefused() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let file = try TemporaryFile((0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 7) })
        defer { file.remove() }
        let context = try OpenSSLContext.server(certificateChain: fixture.certificate, privateKey: fixture.key)
        let (code, sent, refused) = try await withLoop { loop in
            try loop.runUntilComplete { () -> (Int32, Int, String) in
                let server = try await loop.createServer(host: "127.0.0.1", port: 0, ssl: context) {
                    RecordingProtocol()
                }
                let port = server.sockets[0].localAddress.port ?? 0
                let line = "sink \(port) '\(fixture.ca)' '\(file.path)'"
                let client = try loop.createTask { try await loop.runInExecutor { fixture.client(line) } }
                try await eventually(loop) { server.clientCount == 1 }
                let transport = server.clientTransports[0]
                var refused = ""
                do {
                    _ = try await loop.sendfile(transport, file: file.fd, fallback: false)
                } catch let error as TulipError {
                    refused = "\(error.code)"
                }
                let sent = try await loop.sendfile(transport, file: file.fd)
                transport.close()
                let code = try await client.value
                server.close()
                await server.waitClosed()
                return (code, sent, refused)
            }
        }
        #expect(code == 0)
        #expect(sent == 300_000)
        #expect(refused == "sendfileNotSupported")
    }

    @Test func pr10SilentClientIsClosedAfterTheHandshakeTimeoutWithoutConnectionMade() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let (codes, protocols) = try await serve(fixture, timeout: .milliseconds(300), clients: [("silent", "")])
        #expect(codes == [0])
        #expect(protocols.isEmpty)
    }

    @Test func plaintextGarbageIsClosedWhileAnotherTLSClientCarriesOn() async throws {
        let fixture = try TLSFixture()
        defer { fixture.remove() }
        let (codes, protocols) = try await serve(fixture, clients: [("garbage", "")])
        #expect(codes == [0])
        #expect(protocols.count == 1)
    }
}
