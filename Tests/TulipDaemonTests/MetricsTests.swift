import NIOCore
import Testing
import TulipTestKit

@testable import TulipDaemon

struct MetricsTests {
    private func status(accepted: UInt64, open: Int, reloads: UInt64 = 1) -> DaemonStatus {
        DaemonStatus(
            pid: 1,
            uptimeSeconds: 1,
            configGeneration: 1,
            loopLagSeconds: 0.25,
            reloadsTotal: reloads,
            listeners: [
                ListenerStatus(
                    name: "echo",
                    kind: "tcp",
                    address: "127.0.0.1:1",
                    protocolName: "echo",
                    state: .serving,
                    openConnections: open,
                    acceptedTotal: accepted,
                    refusedTotal: ["per_source": 2],
                    bytesReceivedTotal: 10,
                    bytesSentTotal: 20,
                    datagramsReceivedTotal: 0,
                    tlsHandshakeFailuresTotal: 1
                )
            ]
        )
    }

    private func lines(_ metrics: DaemonMetrics) -> Set<String> {
        Set(String(decoding: metrics.render(), as: UTF8.self).split(separator: "\n").map(String.init))
    }

    @Test func snapshotsBecomeCountersAndGauges() {
        let metrics = DaemonMetrics()
        metrics.update(from: self.status(accepted: 5, open: 2))
        metrics.update(from: self.status(accepted: 8, open: 1, reloads: 3))
        let lines = self.lines(metrics)
        for expected in [
            #"tulipd_connections_accepted_total{listener="echo"} 8"#,
            #"tulipd_connections_open{listener="echo"} 1.0"#,
            #"tulipd_listener_paused_at_limit{listener="echo"} 0.0"#,
            #"tulipd_connections_refused_total{listener="echo",reason="per_source"} 2"#,
            #"tulipd_connections_refused_total{listener="echo",reason="max_connections"} 0"#,
            #"tulipd_bytes_received_total{listener="echo"} 10"#,
            #"tulipd_bytes_sent_total{listener="echo"} 20"#,
            #"tulipd_tls_handshake_failures_total{listener="echo"} 1"#,
            #"tulipd_reloads_total{result="success"} 3"#,
            #"tulipd_reloads_total{result="failure"} 0"#,
            "tulipd_loop_lag_seconds 0.25",
        ] {
            #expect(lines.contains(expected), "missing \(expected) in \(lines.sorted())")
        }
    }

    @Test func aRemovedListenerKeepsItsCountersAndHasNoOpenConnections() {
        let metrics = DaemonMetrics()
        metrics.update(from: self.status(accepted: 5, open: 2))
        var empty = self.status(accepted: 0, open: 0)
        empty.listeners = []
        metrics.update(from: empty)
        let lines = self.lines(metrics)
        #expect(lines.contains(#"tulipd_connections_accepted_total{listener="echo"} 5"#))
        #expect(lines.contains(#"tulipd_connections_open{listener="echo"} 0.0"#))
    }

    @Test func httpServesMetricsWithKeepAliveAndRefusesEverythingElse() throws {
        let harness = try EmbeddedTransport(protocol: MetricsHTTPProtocol(render: { Array("m 1\n".utf8) }))
        try harness.send(string: "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nHEAD /metrics?x=1 HTTP/1.1\r\n\r\n")
        #expect(
            try harness.readOutboundString()
                == "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 4\r\n\r\nm 1\n"
                + "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 4\r\n\r\n"
        )
        try harness.send(string: "POST /metrics HTTP/1.1\r\n\r\n")
        #expect(try harness.readOutboundString().hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n"))
        try harness.send(string: "GET / HTTP/1.1\r\nConnection: close\r\n\r\n")
        let notFound = try harness.readOutboundString()
        #expect(notFound.hasPrefix("HTTP/1.1 404 Not Found\r\n"))
        #expect(notFound.contains("Connection: close\r\n"))
        #expect(harness.isClosed)
    }

    @Test func malformedAndOversizedRequestsAreClosed() throws {
        let garbage = try EmbeddedTransport(protocol: MetricsHTTPProtocol(render: { [] }))
        try garbage.send(string: "\u{1}\u{2}garbage\r\n\r\n")
        #expect(try garbage.readOutboundString().hasPrefix("HTTP/1.1 400 Bad Request\r\n"))
        #expect(garbage.isClosed)
        let huge = try EmbeddedTransport(protocol: MetricsHTTPProtocol(render: { [] }))
        try huge.send(Array(repeating: UInt8(ascii: "a"), count: MetricsHTTPProtocol.maximumHeadLength + 1))
        #expect(try huge.readOutboundString().hasPrefix("HTTP/1.1 431 "))
        #expect(huge.isClosed)
    }
}
