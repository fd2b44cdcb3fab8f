import Logging

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A swift-log handler that writes each entry natively to the journal with `sd_journal_sendv`:
/// `MESSAGE`, `PRIORITY`, `SYSLOG_IDENTIFIER`, `CODE_FILE`, `CODE_LINE`, `CODE_FUNC`, and every
/// metadata key as its own field, named by ``fieldName(_:)`` (`listener` → `LISTENER`).
///
/// When the journal cannot be reached the entry goes to `fallback` (if any) instead; logging never
/// throws or crashes. (`sd_journal_sendv` itself drops entries silently, returning 0, when the
/// journal socket does not exist, so the handler checks for the socket once when it is made.)
public struct JournaldLogHandler: LogHandler {
    /// The entry level below which entries are dropped.
    public var logLevel: Logger.Level
    /// Metadata attached to every entry of this logger.
    public var metadata: Logger.Metadata = [:]
    private let identifier: String
    private let fallback: (any LogHandler)?
    private let journalAvailable: Bool

    /// The journal's native socket.
    public static let journalSocketPath = "/run/systemd/journal/socket"

    /// Makes a handler that logs as `SYSLOG_IDENTIFIER=identifier`.
    public init(identifier: String = "tulipd", level: Logger.Level, fallback: (any LogHandler)? = nil) {
        self.identifier = identifier
        self.logLevel = level
        self.fallback = fallback
        self.journalAvailable = Self.isJournalAvailable()
    }

    /// Whether the journal's socket exists and is writable.
    public static func isJournalAvailable() -> Bool {
        system_access_writable(Self.journalSocketPath)
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = self.metadata
        if let extra = event.metadata {
            merged.merge(extra) { _, new in new }
        }
        if let error = event.error, merged["error"] == nil {
            merged["error"] = "\(error)"
        }
        let sent = self.journalAvailable && Self.send(self.fields(event: event, metadata: merged)) >= 0
        if !sent, let fallback = self.fallback {
            var forwarded = event
            forwarded.metadata = merged
            fallback.log(event: forwarded)
        }
    }

    /// The `NAME=value` fields of one entry, in the order they are sent.
    func fields(event: LogEvent, metadata: Logger.Metadata) -> [(name: String, value: String)] {
        var fields: [(name: String, value: String)] = [
            ("MESSAGE", "\(event.message)"),
            ("PRIORITY", "\(Self.priority(event.level))"),
            ("SYSLOG_IDENTIFIER", self.identifier),
            ("CODE_FILE", event.file),
            ("CODE_LINE", "\(event.line)"),
            ("CODE_FUNC", event.function),
        ]
        for key in metadata.keys.sorted() {
            guard let name = Self.fieldName(key) else { continue }
            fields.append((name, "\(metadata[key]!)"))  // key comes from the dictionary.
        }
        return fields
    }

    /// Sends the fields with `sd_journal_sendv`; returns its result (`-errno` on failure).
    @discardableResult
    static func send(_ fields: [(name: String, value: String)]) -> CInt {
        var bytes: [UInt8] = []
        var ranges: [Range<Int>] = []
        for field in fields {
            let start = bytes.count
            bytes.append(contentsOf: field.name.utf8)
            bytes.append(UInt8(ascii: "="))
            bytes.append(contentsOf: field.value.utf8)
            ranges.append(start..<bytes.count)
        }
        return bytes.withUnsafeMutableBytes { raw -> CInt in
            let vectors = ranges.map { range in
                iovec(iov_base: raw.baseAddress.map { $0 + range.lowerBound }, iov_len: range.count)
            }
            return vectors.withUnsafeBufferPointer { system_sd_journal_sendv($0.baseAddress!, CInt($0.count)) }
        }
    }

    /// The syslog priority of a swift-log level: trace and debug 7 … critical 2.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// The journal field a metadata key becomes.
    ///
    /// Upper-case ASCII letters, digits and `_` (any
    /// other character becomes `_`), no leading `_` (those are the journal's trusted fields), not
    /// starting with a digit, at most 64 characters; the names this handler sets itself get a
    /// `META_` prefix. Nil when nothing is left (`"__"`).
    public static func fieldName(_ key: String) -> String? {
        var name = String(
            key.unicodeScalars.map { scalar -> Character in
                switch scalar {
                case "a"..."z": Character(String(scalar).uppercased())
                case "A"..."Z", "0"..."9": Character(scalar)
                default: "_"
                }
            }
        )
        while name.first == "_" { name.removeFirst() }
        guard let first = name.first else { return nil }
        if first.isNumber { name = "F_" + name }
        if Self.ownFields.contains(name) { name = "META_" + name }
        return String(name.prefix(64))
    }

    private static let ownFields: Set<String> = [
        "MESSAGE", "PRIORITY", "SYSLOG_IDENTIFIER", "CODE_FILE", "CODE_LINE", "CODE_FUNC",
    ]

    /// Whether standard error is connected to the journal: `JOURNAL_STREAM` (`device:inode`) names
    /// the file standard error is (what `log.format: auto` checks).
    public static func standardErrorIsJournal(environment journalStream: String? = nil) -> Bool {
        guard let text = journalStream ?? ProcessEnvironment.value("JOURNAL_STREAM"),
            let (device, inode) = Self.parseJournalStream(text)
        else { return false }
        guard let (stderrDevice, stderrInode) = system_fstat_device_inode(2) else { return false }
        return device == stderrDevice && inode == stderrInode
    }

    /// `JOURNAL_STREAM`'s `device:inode`, both decimal.
    public static func parseJournalStream(_ text: String) -> (device: UInt64, inode: UInt64)? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, let device = UInt64(parts[0]), let inode = UInt64(parts[1]) else { return nil }
        return (device, inode)
    }
}
