import NIOCore
import Tulip

/// One HTTP/1.1 connection to the metrics endpoint: `GET /metrics` (or `HEAD`) answers with the
/// Prometheus text format; anything else gets 404, 405 or 400.
///
/// Loop-confined. Keep-alive is honoured, as Prometheus reuses its connections; a request head
/// larger than ``maximumHeadLength`` gets 431 and the connection is closed, so a client cannot make
/// the daemon buffer without bound. Request bodies are not expected and close the connection.
final class MetricsHTTPProtocol: StreamProtocol {
    /// The largest request head (request line and headers) accepted.
    static let maximumHeadLength = 8192

    private let render: () -> [UInt8]
    private var transport: ChannelTransport?
    private var pending: ByteBuffer?
    /// The client does not read its responses: no more requests are answered until it does.
    private var writingPaused = false

    /// - Parameter render: produces the exposition, on the loop's thread, once per scrape.
    init(render: @escaping () -> [UInt8]) {
        self.render = render
    }

    func connectionMade(transport: ChannelTransport) {
        self.transport = transport
    }

    func dataReceived(_ data: ByteBuffer) throws {
        self.pending.append(data)
        self.answerPendingRequests()
    }

    // A client that pipelines requests without reading the responses stops being read, so the
    // responses cannot pile up without bound.
    func pauseWriting() {
        self.writingPaused = true
        self.transport?.pauseReading()
    }

    func resumeWriting() {
        self.writingPaused = false
        self.transport?.resumeReading()
        self.answerPendingRequests()
    }

    private func answerPendingRequests() {
        while !self.writingPaused, let transport = self.transport, !transport.isClosing, let pending = self.pending {
            let view = pending.readableBytesView
            guard let end = Self.headEnd(in: view) else {
                if view.count > Self.maximumHeadLength {
                    self.respond(
                        status: "431 Request Header Fields Too Large",
                        body: "request head too large\n",
                        close: true
                    )
                }
                return
            }
            let head = String(decoding: view[view.startIndex..<end], as: UTF8.self)
            var rest = pending
            rest.moveReaderIndex(to: end + 4)
            self.pending = rest.readableBytes > 0 ? rest : nil
            self.handle(head: head)
        }
    }

    func connectionLost(error: (any Error)?) {
        self.transport = nil
        self.pending = nil
    }

    private func handle(head: String) {
        let lines = head.split(separator: "\r\n", omittingEmptySubsequences: false)
        let requestLine = lines.first.map { $0.split(separator: " ") } ?? []
        guard requestLine.count == 3, requestLine[2].hasPrefix("HTTP/1.") else {
            self.respond(status: "400 Bad Request", body: "malformed request line\n", close: true)
            return
        }
        var close = requestLine[2] == "HTTP/1.0"
        for line in lines.dropFirst() {
            let parts = line.split(separator: ":", maxSplits: 1)
            guard parts.count == 2 else { continue }
            let name = parts[0].lowercased()
            let value = parts[1].trimmingPrefix(" ").lowercased()
            if name == "connection" { close = value.contains("close") || (close && !value.contains("keep-alive")) }
            if name == "content-length", value != "0" { close = true }
            if name == "transfer-encoding" { close = true }
        }
        let method = requestLine[0]
        let path = requestLine[1].split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard path == "/metrics" else {
            self.respond(status: "404 Not Found", body: "metrics are at /metrics\n", close: close)
            return
        }
        guard method == "GET" || method == "HEAD" else {
            self.respond(
                status: "405 Method Not Allowed",
                body: "use GET\n",
                close: close,
                extra: "Allow: GET, HEAD\r\n"
            )
            return
        }
        let body = self.render()
        self.respond(
            status: "200 OK",
            contentType: "text/plain; version=0.0.4; charset=utf-8",
            body: body,
            includeBody: method == "GET",
            close: close
        )
    }

    private func respond(status: String, body: String, close: Bool, extra: String = "") {
        self.respond(
            status: status,
            contentType: "text/plain; charset=utf-8",
            body: Array(body.utf8),
            includeBody: true,
            close: close,
            extra: extra
        )
    }

    private func respond(
        status: String,
        contentType: String,
        body: [UInt8],
        includeBody: Bool,
        close: Bool,
        extra: String = ""
    ) {
        guard let transport = self.transport else { return }
        let head =
            "HTTP/1.1 \(status)\r\nContent-Type: \(contentType)\r\nContent-Length: \(body.count)\r\n\(extra)"
            + (close ? "Connection: close\r\n" : "") + "\r\n"
        try? transport.write(string: head)
        if includeBody { try? transport.write(body) }
        if close {
            self.pending = nil
            transport.close()
        }
    }

    /// The index of the `\r\n\r\n` that ends a request head.
    private static func headEnd(in view: ByteBufferView) -> Int? {
        var index = view.startIndex
        while index + 3 < view.endIndex {
            if view[index] == 13, view[index + 1] == 10, view[index + 2] == 13, view[index + 3] == 10 { return index }
            index += 1
        }
        return nil
    }
}
