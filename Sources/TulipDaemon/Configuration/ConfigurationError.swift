/// A problem with the daemon's configuration: unreadable, malformed JSON, or a value the schema rejects.
///
/// Each error names what an operator needs to fix it: the file, the JSON key path
/// (`listeners[2].tcp.port`), and the line and column of the offending value. ``description`` formats
/// them the way compilers do, so editors and terminals can jump to the spot:
///
/// ```
/// tulipd.json:3:15: syntax error: expected ',' or '}' after object member
/// tulipd.json:9:31: listeners[1].tcp.port: 70000 is out of range 0...65535
/// ```
///
/// Equality is on ``code`` only, so `#expect(throws: ConfigurationError.self)` style checks and
/// `error.code == .unknownKey` work whatever message or position an error carries.
public struct ConfigurationError: Error, Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
    /// The kind of configuration problem; an open set of values.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Base: String, Hashable, Sendable {
            case syntax
            case duplicateKey
            case unknownKey
            case missingKey
            case typeMismatch
            case invalidValue
            case unreadable
        }

        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The bytes are not valid JSON (RFC 8259) or not valid UTF-8.
        public static let syntax = Code(.syntax)
        /// An object has the same key twice.
        public static let duplicateKey = Code(.duplicateKey)
        /// An object has a key that the schema does not define; usually a typo.
        public static let unknownKey = Code(.unknownKey)
        /// A required key is absent.
        public static let missingKey = Code(.missingKey)
        /// A value has the wrong JSON type, for example a string where an integer belongs.
        public static let typeMismatch = Code(.typeMismatch)
        /// A value has the right type but is not allowed: out of range, malformed, or inconsistent.
        public static let invalidValue = Code(.invalidValue)
        /// The configuration file could not be opened or read.
        public static let unreadable = Code(.unreadable)

        /// The code's name, such as `unknownKey`.
        public var description: String { self.base.rawValue }
    }

    /// What kind of problem this is.
    public let code: Code
    /// The configuration file, as the operator named it; `nil` when the JSON did not come from a file.
    public var file: String?
    /// Where in the document the problem is, such as `listeners[2].tcp.port`; empty for syntax errors.
    public var keyPath: String
    /// The 1-based line of the offending value or character, if known.
    public var line: Int?
    /// The 1-based column, counted in Unicode scalars, of the offending value or character, if known.
    public var column: Int?
    /// What is wrong, in words meant for the operator.
    public var message: String
    // Where in Tulip's own source the error was raised; only for debugging the daemon itself.
    private let origin: String

    /// Makes an error with every field given; the static factories below are the usual way in.
    ///
    /// - Parameters:
    ///   - code: The kind of problem.
    ///   - message: What is wrong, in words meant for the operator.
    ///   - keyPath: Where in the document the problem is; empty for syntax and file errors.
    ///   - location: The line and column of the offending value, if known.
    ///   - file: The configuration file, if known.
    ///   - sourceFileID: Where in Tulip's source the error is raised; leave the default.
    ///   - sourceLine: Where in Tulip's source the error is raised; leave the default.
    public init(
        _ code: Code,
        _ message: String,
        keyPath: String = "",
        location: JSONValue.Location? = nil,
        file: String? = nil,
        sourceFileID: String = #fileID,
        sourceLine: Int = #line
    ) {
        self.code = code
        self.message = message
        self.keyPath = keyPath
        self.line = location?.line
        self.column = location?.column
        self.file = file
        self.origin = "\(sourceFileID):\(sourceLine)"
    }

    /// Whether two errors have the same ``code``; message, key path and position do not count.
    public static func == (lhs: ConfigurationError, rhs: ConfigurationError) -> Bool { lhs.code == rhs.code }

    /// Hashes the ``code`` only, consistent with `==`.
    public func hash(into hasher: inout Hasher) { hasher.combine(self.code) }

    /// The error as `FILE:LINE:COLUMN: KEYPATH: MESSAGE`, leaving out the parts that are unknown.
    ///
    /// Syntax errors say `syntax error` where other errors put the key path.
    public var description: String {
        var position: [String] = []
        if let file = self.file { position.append(file) }
        if let line = self.line {
            position.append(String(line))
            if let column = self.column { position.append(String(column)) }
        }
        var parts: [String] = []
        if !position.isEmpty { parts.append(position.joined(separator: ":")) }
        if self.code == .syntax {
            parts.append("syntax error")
        } else if !self.keyPath.isEmpty {
            parts.append(self.keyPath)
        }
        parts.append(self.message)
        return parts.joined(separator: ": ")
    }

    /// ``description`` followed by the code and the place in Tulip's source that raised the error.
    public var debugDescription: String { "\(self.description) [\(self.code) at \(self.origin)]" }
}

// MARK: - Factories

extension ConfigurationError {
    /// Malformed JSON at the given position.
    public static func syntax(
        _ message: String,
        at location: JSONValue.Location,
        sourceFileID: String = #fileID,
        sourceLine: Int = #line
    ) -> ConfigurationError {
        ConfigurationError(.syntax, message, location: location, sourceFileID: sourceFileID, sourceLine: sourceLine)
    }

    /// A key that the schema does not define, at `keyPath` (which ends with that key).
    public static func unknownKey(
        _ key: String,
        keyPath: String,
        at location: JSONValue.Location?,
        sourceFileID: String = #fileID,
        sourceLine: Int = #line
    ) -> ConfigurationError {
        ConfigurationError(
            .unknownKey,
            "unknown key '\(key)'",
            keyPath: keyPath,
            location: location,
            sourceFileID: sourceFileID,
            sourceLine: sourceLine
        )
    }

    /// A required key that is absent; `keyPath` ends with that key, `location` is the enclosing object's.
    public static func missingKey(
        _ key: String,
        keyPath: String,
        at location: JSONValue.Location?,
        sourceFileID: String = #fileID,
        sourceLine: Int = #line
    ) -> ConfigurationError {
        ConfigurationError(
            .missingKey,
            "missing required key '\(key)'",
            keyPath: keyPath,
            location: location,
            sourceFileID: sourceFileID,
            sourceLine: sourceLine
        )
    }

    /// A value of the wrong JSON type.
    public static func typeMismatch(
        expected: String,
        got value: JSONValue,
        keyPath: String,
        at location: JSONValue.Location?,
        sourceFileID: String = #fileID,
        sourceLine: Int = #line
    ) -> ConfigurationError {
        ConfigurationError(
            .typeMismatch,
            "expected \(expected), got \(value.briefDescription)",
            keyPath: keyPath,
            location: location,
            sourceFileID: sourceFileID,
            sourceLine: sourceLine
        )
    }

    /// A value of the right type that is not allowed; plugins use this for their own option checks.
    public static func invalidValue(
        _ message: String,
        keyPath: String,
        at location: JSONValue.Location?,
        sourceFileID: String = #fileID,
        sourceLine: Int = #line
    ) -> ConfigurationError {
        ConfigurationError(
            .invalidValue,
            message,
            keyPath: keyPath,
            location: location,
            sourceFileID: sourceFileID,
            sourceLine: sourceLine
        )
    }
}

// MARK: - Several errors at once

/// Every schema error found in one configuration, so an operator can fix them in one pass.
///
/// The errors are in document order. ``description`` has one ``ConfigurationError/description`` per line.
public struct ConfigurationErrors: Error, Sendable, CustomStringConvertible {
    /// The errors, in document order; never empty when thrown.
    public var errors: [ConfigurationError]

    /// Wraps the given errors.
    public init(_ errors: [ConfigurationError]) {
        self.errors = errors
    }

    /// One error description per line.
    public var description: String {
        self.errors.lazy.map(\.description).joined(separator: "\n")
    }
}

// MARK: - Key paths

extension String {
    /// This key path followed by an object key: `listeners[2]` + `tcp` gives `listeners[2].tcp`.
    ///
    /// Keys that are not plain identifiers are quoted, `options["a.b"]`, so the path stays unambiguous.
    func appendingKeyPath(key: String) -> String {
        let isPlain =
            !key.isEmpty
            && key.utf8.allSatisfy { byte in
                switch byte {
                case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                    UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "_"), UInt8(ascii: "-"):
                    true
                default:
                    false
                }
            }
        if !isPlain { return self + "[\(key.debugDescription)]" }
        return self.isEmpty ? key : self + "." + key
    }

    /// This key path followed by an array index: `listeners` + `2` gives `listeners[2]`.
    func appendingKeyPath(index: Int) -> String {
        self + "[\(index)]"
    }
}
