import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A swift-log handler that writes one line per entry to standard error, as text or JSON.
///
/// Text: `2026-11-26T15:10:02.123Z info tulipd: connection closed listener=echo peer=…`.
/// JSON: one object per line with `time`, `level`, `message`, `source` and the metadata keys.
/// Each line is written with a single `write(2)`, so lines from several threads never interleave.
public struct StderrLogHandler: LogHandler {
    /// How entries are written.
    public struct Format: Hashable, Sendable {
        let isJSON: Bool
        /// `time level label: message key=value …`.
        public static let text = Format(isJSON: false)
        /// One JSON object per line.
        public static let json = Format(isJSON: true)
    }

    /// The entry level below which entries are dropped.
    public var logLevel: Logger.Level
    /// Metadata attached to every entry of this logger.
    public var metadata: Logger.Metadata = [:]
    private let label: String
    private let format: Format

    /// Makes a handler for `label`.
    public init(label: String, format: Format, level: Logger.Level) {
        self.label = label
        self.format = format
        self.logLevel = level
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
        let line: String
        if self.format.isJSON {
            line = Self.jsonLine(event: event, label: self.label, metadata: merged)
        } else {
            line = Self.textLine(event: event, label: self.label, metadata: merged)
        }
        Self.writeLine(line)
    }

    static func textLine(event: LogEvent, label: String, metadata: Logger.Metadata) -> String {
        var line = "\(Self.timestamp()) \(event.level) \(label): \(event.message)"
        for key in metadata.keys.sorted() {
            line += " \(key)=\(Self.textValue(metadata[key]!))"  // key comes from the dictionary.
        }
        return line
    }

    static func jsonLine(event: LogEvent, label: String, metadata: Logger.Metadata) -> String {
        var line = "{\"time\":\"\(Self.timestamp())\",\"level\":\"\(event.level)\",\"logger\":\(Self.jsonString(label))"
        line += ",\"message\":\(Self.jsonString("\(event.message)"))"
        line += ",\"source\":\(Self.jsonString("\(event.file):\(event.line)"))"
        for key in metadata.keys.sorted() {
            line += ",\(Self.jsonString(key)):\(Self.jsonString("\(metadata[key]!)"))"
        }
        return line + "}"
    }

    private static func textValue(_ value: Logger.Metadata.Value) -> String {
        let text = "\(value)"
        if text.isEmpty || text.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" }) {
            return Self.jsonString(text)
        }
        return text
    }

    static func jsonString(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                result += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    static func timestamp() -> String {
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        var seconds = now.tv_sec
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int(now.tv_nsec / 1_000_000)
        func pad(_ value: Int32, _ width: Int = 2) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1))-\(pad(parts.tm_mday))T"
            + "\(pad(parts.tm_hour)):\(pad(parts.tm_min)):\(pad(parts.tm_sec)).\(pad(Int32(millis), 3))Z"
    }

    private static func writeLine(_ line: String) {
        var bytes = Array(line.utf8)
        bytes.append(UInt8(ascii: "\n"))
        bytes.withUnsafeBytes { buffer in
            var offset = 0
            while offset < buffer.count {
                let written = Glibc.write(2, buffer.baseAddress! + offset, buffer.count - offset)
                if written < 0 {
                    if errno == EINTR { continue }
                    return
                }
                offset += written
            }
        }
    }
}
