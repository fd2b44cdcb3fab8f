import Logging
import NIOCore
import Testing
import Tulip
import TulipTestKit

@testable import TulipDaemon

/// A daemon stand-in with two listeners.
private final class FakeBackend: AdminBackend {
    var drained: [String] = []
    var resumed: [String] = []

    func adminStatus() -> DaemonStatus {
        DaemonStatus(
            pid: 42,
            uptimeSeconds: 1.5,
            configGeneration: 3,
            loopLagSeconds: 0.002,
            reloadsTotal: 2,
            listeners: [
                ListenerStatus(
                    name: "echo",
                    kind: "tcp",
                    address: "127.0.0.1:7007",
                    protocolName: "echo",
                    state: .serving,
                    openConnections: 1,
                    acceptedTotal: 10,
                    refusedTotal: ["max_connections": 2, "per_source": 1],
                    bytesReceivedTotal: 100,
                    bytesSentTotal: 100,
                    datagramsReceivedTotal: 0,
                    tlsHandshakeFailuresTotal: 0
                )
            ]
        )
    }

    func adminConnections(listener: String?) throws(AdminError) -> [ConnectionStatus] {
        guard listener == nil || listener == "echo" else { throw AdminError("no listener named '\(listener!)'") }
        return [
            ConnectionStatus(
                listener: "echo",
                protocolName: "echo",
                id: 7,
                peer: "127.0.0.1:5000",
                bytesIn: 3,
                bytesOut: 3,
                ageSeconds: 0.25
            )
        ]
    }

    func adminReload() async throws(AdminError) -> ReloadOutcome {
        ReloadOutcome(generation: 4, added: ["b"], removed: [], changed: [], unchanged: ["echo"])
    }

    func adminDrain(listener: String) throws(AdminError) { self.drained.append(listener) }
    func adminResume(listener: String) throws(AdminError) { self.resumed.append(listener) }
}

struct AdminProtocolTests {
    private func harness(_ backend: FakeBackend = FakeBackend()) throws -> EmbeddedTransport {
        try EmbeddedTransport(protocol: AdminProtocol(backend: backend, logger: Logger(label: "t")))
    }

    private func replies(_ harness: EmbeddedTransport) throws -> [AdminResponse] {
        try harness.readOutboundString().split(separator: "\n").map { try AdminResponse(line: Array($0.utf8)) }
    }

    @Test func statusReportsTheDaemonAndEveryListener() throws {
        let harness = try self.harness()
        try harness.send(string: "status\n")
        let reply = try #require(try self.replies(harness).first)
        #expect(reply.ok)
        #expect(
            reply.text.hasPrefix(
                #"{"ok":true,"pid":42,"uptime_seconds":1.5,"config_generation":3,"loop_lag_seconds":0.002,"reloads_total":2,"reload_failures_total":0,"listeners":[{"name":"echo","kind":"tcp","address":"127.0.0.1:7007","protocol":"echo","state":"serving","open_connections":1,"accepted_total":10,"refused_total":3,"#
            )
        )
    }

    @Test func pipelinedLinesGetOneReplyEachInOrder() throws {
        let harness = try self.harness()
        try harness.send(string: "listeners\r\nconnections echo\nconnections nope\nbogus\n\n")
        let replies = try self.replies(harness)
        #expect(replies.count == 5)
        #expect(replies.map(\.ok) == [true, true, false, false, false])
        #expect(replies[1].text.contains(#""peer":"127.0.0.1:5000""#))
        #expect(replies[2].error == "no listener named 'nope'")
        #expect(replies[3].error?.hasPrefix("unknown command 'bogus'; expected one of: status") == true)
        #expect(replies[4].error?.hasPrefix("empty command") == true)
    }

    @Test func wrongArgumentCountsAreRefusedWithTheUsage() throws {
        let harness = try self.harness()
        try harness.send(string: "drain\nstatus now\nconnections a b\n")
        #expect(
            try self.replies(harness).map(\.error) == [
                "usage: drain LISTENER", "usage: status", "usage: connections [LISTENER]",
            ]
        )
    }

    @Test func changingCommandsNeedAPeerWhoseUserIsKnown() throws {
        // An embedded channel has no SO_PEERCRED: the command is refused, nothing is drained.
        let backend = FakeBackend()
        let harness = try self.harness(backend)
        try harness.send(string: "drain echo\nreload\n")
        let replies = try self.replies(harness)
        #expect(replies.map(\.ok) == [false, false])
        #expect(replies[0].error == "drain needs a peer whose user can be checked")
        #expect(backend.drained.isEmpty)
    }

    @Test func anOverlongLineIsRefusedAndTheConnectionClosed() throws {
        let harness = try self.harness()
        try harness.send(Array(repeating: UInt8(ascii: "x"), count: AdminProtocol.maximumLineLength + 10))
        let reply = try #require(try self.replies(harness).first)
        #expect(reply.error == "line longer than \(AdminProtocol.maximumLineLength) bytes")
        #expect(harness.isClosed)
    }

    @Test func aLastCommandWithoutNewlineIsAnsweredBeforeClosing() throws {
        let harness = try self.harness()
        try harness.send(string: "listeners")
        harness.sendEOF()
        #expect(try self.replies(harness).map(\.ok) == [true])
        #expect(harness.isClosed)
    }

    @Test func theTextFormatterPrintsAHeaderAndAnAlignedTable() throws {
        let harness = try self.harness()
        try harness.send(string: "status\nconnections\n")
        let replies = try self.replies(harness)
        let status = AdminTextFormatter.render(replies[0])
        #expect(
            status == """
                tulipd pid 42, up 1.5 s, config generation 3, loop lag 2.0 ms

                LISTENER  KIND  ADDRESS         PROTOCOL  STATE    OPEN  ACCEPTED  REFUSED
                echo      tcp   127.0.0.1:7007  echo      serving  1     10        3
                """
        )
        #expect(AdminTextFormatter.render(replies[1]).contains("echo      echo      7   127.0.0.1:5000  3"))
        let failure = try AdminResponse(line: Array(#"{"ok":false,"error":"boom"}"#.utf8))
        #expect(AdminTextFormatter.render(failure) == "error: boom")
    }
}

struct AdminCommandTests {
    @Test(arguments: [
        ("status", AdminCommand.status),
        ("  listeners  ", .listeners),
        ("connections", .connections(listener: nil)),
        ("connections\techo\r", .connections(listener: "echo")),
        ("reload", .reload),
        ("drain echo", .drain(listener: "echo")),
        ("resume echo", .resume(listener: "echo")),
    ])
    func parses(line: String, command: AdminCommand) throws {
        #expect(try AdminCommand(line: Substring(line)) == command)
    }

    @Test func onlyChangingCommandsNeedPrivilege() {
        #expect(AdminCommand.status.isChanging == false)
        #expect(AdminCommand.connections(listener: nil).isChanging == false)
        #expect(AdminCommand.reload.isChanging)
        #expect(AdminCommand.drain(listener: "a").isChanging)
        #expect(AdminCommand.resume(listener: "a").isChanging)
    }

    @Test func jsonEscapesAndKeepsKeyOrder() {
        let json = AdminJSON.object([
            ("b", .string("quote \" backslash \\ newline \n")), ("a", .double(.nan)),
            ("c", .array([.int(-1), .bool(false), .null])),
        ])
        #expect(json.serialized == #"{"b":"quote \" backslash \\ newline \n","a":null,"c":[-1,false,null]}"#)
    }
}
