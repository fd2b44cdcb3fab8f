import NIOCore
import Tulip
import TulipDaemon

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// RFC 867 daytime: one line with the current date and time, then the connection closes.
public struct DaytimePlugin: Plugin {
    /// `{"format": "rfc3339" | "rfc2822", "rate_limit": …}`; RFC 3339 (UTC) by default;
    /// `rate_limit` as in ``DatagramOptions``.
    public struct Options: Decodable, Sendable {
        /// The line's format.
        public var format: String?
        /// The reflection guard for datagram listeners.
        public var datagram: DatagramOptions

        private enum CodingKeys: String, CodingKey {
            case format
        }

        public init(from decoder: any Decoder) throws {
            let container = try decoder.container(keyedBy: CodingKeys.self)
            self.format = try container.decodeIfPresent(String.self, forKey: .format)
            self.datagram = try DatagramOptions(from: decoder)
        }
    }

    /// The supported line formats.
    public enum Format: String, Sendable, CaseIterable {
        /// `2026-11-26T15:10:02Z`.
        case rfc3339
        /// `Thu, 26 Nov 2026 15:10:02 +0000`.
        case rfc2822
    }

    public static let name = "daytime"
    public static let summary = "RFC 867 daytime: sends the current date and time as one line, then closes"
    public static let supportedKinds: Set<ListenerKind> = [.tcp, .unix, .udp, .unixDatagram]

    public static func makeProtocolFactory(options: Options, context: PluginContext) throws -> any ProtocolFactory {
        let formatName = options.format ?? Format.rfc3339.rawValue
        guard let format = Format(rawValue: formatName) else {
            let known = Format.allCases.map { "\"\($0.rawValue)\"" }.joined(separator: ", ")
            throw context.invalidOption("format", "unknown format \"\(formatName)\"; expected one of \(known)")
        }
        try options.datagram.validate(context: context)
        let logger = context.logger
        // Over datagrams (RFC 867's UDP form) any request gets one line, within the rate limit.
        return StreamAndDatagramProtocolFactory(
            stream: { DaytimeProtocol(format: format) },
            datagram: {
                DatagramReplyProtocol(limit: options.datagram.rateLimit, logger: logger) { _, allocator in
                    allocator.buffer(string: DaytimePlugin.line(at: Int(Glibc.time(nil)), format: format) + "\r\n")
                }
            }
        )
    }

    /// The daytime line for `seconds` since the Unix epoch, without the line terminator.
    public static func line(at seconds: Int, format: Format) -> String {
        var time = time_t(seconds)
        var parts = tm()
        gmtime_r(&time, &parts)
        func pad(_ value: Int32, _ width: Int = 2) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        switch format {
        case .rfc3339:
            return "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1))-\(pad(parts.tm_mday))T"
                + "\(pad(parts.tm_hour)):\(pad(parts.tm_min)):\(pad(parts.tm_sec))Z"
        case .rfc2822:
            let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
            let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
            return "\(days[Int(parts.tm_wday)]), \(pad(parts.tm_mday)) \(months[Int(parts.tm_mon)]) "
                + "\(pad(parts.tm_year + 1900, 4)) \(pad(parts.tm_hour)):\(pad(parts.tm_min)):\(pad(parts.tm_sec)) +0000"
        }
    }
}

/// The protocol object of ``DaytimePlugin``.
public final class DaytimeProtocol: StreamProtocol {
    private let format: DaytimePlugin.Format

    /// Makes a daytime protocol object.
    public init(format: DaytimePlugin.Format) {
        self.format = format
    }

    public func connectionMade(transport: ChannelTransport) {
        let line = DaytimePlugin.line(at: Int(Glibc.time(nil)), format: self.format) + "\r\n"
        try? transport.write(string: line)
        transport.close()
    }
}
