import Logging
import Testing

@testable import TulipSystemd

#if canImport(Glibc)
import Glibc
#endif

/// Collects the entries a fallback handler receives.
final class CollectedEvents: @unchecked Sendable {
    // @unchecked Sendable: tests touch it from one thread at a time.
    var events: [LogEvent] = []
}

struct CollectingHandler: LogHandler {
    var logLevel: Logger.Level = .trace
    var metadata: Logger.Metadata = [:]
    let sink: CollectedEvents

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        self.sink.events.append(event)
    }
}

struct JournaldLogHandlerTests {
    @Test(
        arguments: [
            ("listener", "LISTENER"),
            ("connection_id", "CONNECTION_ID"),
            ("config_generation", "CONFIG_GENERATION"),
            ("bytes-in", "BYTES_IN"),
            ("peer.address", "PEER_ADDRESS"),
            ("_private", "PRIVATE"),
            ("__", nil),
            ("", nil),
            ("2fa", "F_2FA"),
            ("message", "META_MESSAGE"),
            ("priority", "META_PRIORITY"),
            ("größe", "GR__E"),
            (String(repeating: "a", count: 80), String(repeating: "A", count: 64)),
        ] as [(String, String?)]
    )
    func fieldNamesFollowJournaldRules(key: String, expected: String?) {
        #expect(JournaldLogHandler.fieldName(key) == expected)
    }

    @Test func sanitizedNamesAreAlwaysValidJournalFields() {
        for key in ["a b", "x:y", "ÄÖÜ", "0", "_9", "CODE_FILE", "ok_1"] {
            guard let name = JournaldLogHandler.fieldName(key) else { continue }
            #expect(!name.isEmpty && name.count <= 64)
            #expect(name.first != "_" && !(name.first?.isNumber ?? true))
            #expect(name.allSatisfy { ("A"..."Z").contains($0) || ("0"..."9").contains($0) || $0 == "_" })
        }
    }

    @Test func priorities() {
        #expect(JournaldLogHandler.priority(.critical) == 2)
        #expect(JournaldLogHandler.priority(.error) == 3)
        #expect(JournaldLogHandler.priority(.warning) == 4)
        #expect(JournaldLogHandler.priority(.notice) == 5)
        #expect(JournaldLogHandler.priority(.info) == 6)
        #expect(JournaldLogHandler.priority(.debug) == 7)
        #expect(JournaldLogHandler.priority(.trace) == 7)
    }

    @Test func entryFieldsCarryMessageCodeLocationAndMetadata() {
        let handler = JournaldLogHandler(level: .info)
        let event = LogEvent(
            level: .notice,
            message: "connection closed",
            metadata: nil,
            source: "TulipDaemon",
            file: "TulipDaemon/Daemon.swift",
            function: "run()",
            line: 42
        )
        let fields = handler.fields(event: event, metadata: ["listener": "echo", "peer": "127.0.0.1:5"])
        let map = Dictionary(fields.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
        #expect(map["MESSAGE"] == "connection closed")
        #expect(map["PRIORITY"] == "5")
        #expect(map["SYSLOG_IDENTIFIER"] == "tulipd")
        #expect(map["CODE_FILE"] == "TulipDaemon/Daemon.swift")
        #expect(map["CODE_LINE"] == "42")
        #expect(map["CODE_FUNC"] == "run()")
        #expect(map["LISTENER"] == "echo")
        #expect(map["PEER"] == "127.0.0.1:5")
        #expect(fields.count == 8)
    }

    /// Without a running journald (as on this machine) `sd_journal_sendv` drops the entry without
    /// an error or a crash (libsystemd returns 0 for a missing socket), and the handler sends the
    /// entry to its fallback instead; with a journal, the entry is accepted.
    @Test func sendingWithoutJournaldIsHarmlessAndFallsBack() {
        let result = JournaldLogHandler.send([("MESSAGE", "tulip unit test\nsecond line"), ("PRIORITY", "7")])
        #expect(result >= 0)
        if !JournaldLogHandler.isJournalAvailable() {
            let sink = CollectedEvents()
            var logger = Logger(label: "test") { _ in
                JournaldLogHandler(level: .info, fallback: CollectingHandler(sink: sink))
            }
            logger[metadataKey: "listener"] = "echo"
            logger.info("hello", metadata: ["peer": "p"])
            logger.debug("dropped")
            #expect(sink.events.count == 1)
            #expect(sink.events.first?.metadata?["listener"] == "echo")
            #expect(sink.events.first?.metadata?["peer"] == "p")
        }
    }

    @Test func journalStreamIsParsedAndComparedWithStandardError() {
        #expect(JournaldLogHandler.parseJournalStream("8:12345")! == (8, 12345))
        #expect(JournaldLogHandler.parseJournalStream("8") == nil)
        #expect(JournaldLogHandler.parseJournalStream("a:b") == nil)
        #expect(JournaldLogHandler.parseJournalStream("1:2:3") == nil)
        var info = stat()
        #expect(fstat(2, &info) == 0)
        #expect(JournaldLogHandler.standardErrorIsJournal(environment: "\(info.st_dev):\(info.st_ino)"))
        #expect(!JournaldLogHandler.standardErrorIsJournal(environment: "\(info.st_dev):\(info.st_ino &+ 1)"))
        #expect(!JournaldLogHandler.standardErrorIsJournal(environment: "garbage"))
    }
}
