/// One line of the admin protocol, parsed.
///
/// The words are separated by spaces or tabs; a trailing `\r` is ignored, so `socat` and `nc -C`
/// users are served alike.
enum AdminCommand: Equatable, Sendable {
    /// `status`: the daemon and every listener.
    case status
    /// `listeners`: every listener.
    case listeners
    /// `connections [LISTENER]`: the open connections, of one listener or of all.
    case connections(listener: String?)
    /// `reload`: re-read the configuration, as SIGHUP does.
    case reload
    /// `drain LISTENER`: stop accepting on a listener and ask its connections to finish.
    case drain(listener: String)
    /// `resume LISTENER`: accept again on a drained listener.
    case resume(listener: String)

    /// The words of the protocol, for help in errors.
    static let usage = "status, listeners, connections [LISTENER], reload, drain LISTENER, resume LISTENER"

    /// Whether the command changes the daemon, so the peer must be root or the daemon's own user.
    var isChanging: Bool {
        switch self {
        case .status, .listeners, .connections: false
        case .reload, .drain, .resume: true
        }
    }

    /// The command's name, for logs.
    var name: String {
        switch self {
        case .status: "status"
        case .listeners: "listeners"
        case .connections: "connections"
        case .reload: "reload"
        case .drain: "drain"
        case .resume: "resume"
        }
    }

    /// Parses one line (without its `\n`).
    ///
    /// - Throws: ``AdminError`` naming the problem: an empty line, an unknown command, or a wrong
    ///   number of arguments.
    init(line: Substring) throws(AdminError) {
        let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
        guard let first = words.first else { throw AdminError("empty command; expected one of: \(Self.usage)") }
        let arguments = words.dropFirst().map(String.init)
        func expect(_ count: ClosedRange<Int>, _ form: String) throws(AdminError) {
            guard count.contains(arguments.count) else { throw AdminError("usage: \(form)") }
        }
        switch first {
        case "status":
            try expect(0...0, "status")
            self = .status
        case "listeners":
            try expect(0...0, "listeners")
            self = .listeners
        case "connections":
            try expect(0...1, "connections [LISTENER]")
            self = .connections(listener: arguments.first)
        case "reload":
            try expect(0...0, "reload")
            self = .reload
        case "drain":
            try expect(1...1, "drain LISTENER")
            self = .drain(listener: arguments[0])
        case "resume":
            try expect(1...1, "resume LISTENER")
            self = .resume(listener: arguments[0])
        default:
            throw AdminError("unknown command '\(first)'; expected one of: \(Self.usage)")
        }
    }
}
