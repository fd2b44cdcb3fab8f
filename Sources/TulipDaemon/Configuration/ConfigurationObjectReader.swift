/// Collects every schema error of one configuration file, so the operator sees them all at once.
final class ConfigurationDiagnostics {
    let file: String
    private var collected: [ConfigurationError] = []

    init(file: String) {
        self.file = file
    }

    var isEmpty: Bool { self.collected.isEmpty }

    func report(_ error: ConfigurationError) {
        var error = error
        error.file = self.file
        self.collected.append(error)
    }

    /// The errors in document order; errors at the same position keep the order they were found in.
    var errors: [ConfigurationError] {
        self.collected.enumerated().sorted { lhs, rhs in
            let left = (lhs.element.line ?? 0, lhs.element.column ?? 0, lhs.offset)
            let right = (rhs.element.line ?? 0, rhs.element.column ?? 0, rhs.offset)
            return left < right
        }.map(\.element)
    }
}

/// Reads the members of one configuration object, reporting problems instead of throwing them.
///
/// Every accessor marks its key as known; ``reportUnknownKeys()`` then reports the keys nobody asked
/// for. An optional key whose value is `null` reads as absent.
struct ConfigurationObjectReader {
    /// The outcome of checking one JSON value against the schema.
    enum Check<Value> {
        case valid(Value)
        /// The value has the wrong JSON type; the reader reports what it expected.
        case wrongType
        /// The value has the right type but is not allowed, for the given reason.
        case invalid(String)
    }

    let object: JSONObject
    let location: JSONValue.Location
    let keyPath: String
    let diagnostics: ConfigurationDiagnostics
    private var isKnown: [Bool]

    /// Reads `node` as an object, or reports that it is not one and returns `nil`.
    init?(_ node: JSONValue.Node, keyPath: String, diagnostics: ConfigurationDiagnostics) {
        guard case .object(let object) = node.value else {
            diagnostics.report(.typeMismatch(expected: "object", got: node.value, keyPath: keyPath, at: node.location))
            return nil
        }
        self.object = object
        self.location = node.location
        self.keyPath = keyPath
        self.diagnostics = diagnostics
        self.isKnown = Array(repeating: false, count: object.count)
    }

    func keyPath(_ key: String) -> String { self.keyPath.appendingKeyPath(key: key) }

    /// The value of `key`, or `nil` when it is absent or `null`.
    ///
    /// A required key that is absent is reported as missing; one that is `null`, as not being `expected`.
    mutating func node(_ key: String, required: Bool = false, expected: String = "a value") -> JSONValue.Node? {
        guard let index = self.object.index(forKey: key) else {
            if required { self.diagnostics.report(.missingKey(key, keyPath: self.keyPath(key), at: self.location)) }
            return nil
        }
        self.isKnown[index] = true
        let node = self.object[index].value
        guard node.value != .null else {
            if required { self.reportTypeMismatch(key, expected: expected, node: node) }
            return nil
        }
        return node
    }

    /// The value of `key` converted by `check`, or `nil` when it is absent, `null` or rejected.
    ///
    /// - Parameters:
    ///   - key: The member's key.
    ///   - expected: What the value should be, for type-mismatch messages, such as `integer`.
    ///   - required: Whether a missing key is an error; a `null` value counts as missing.
    ///   - check: Converts the value, or says why it cannot.
    /// - Returns: The converted value, or `nil` after reporting any problem.
    mutating func value<Value>(
        _ key: String,
        expected: String,
        required: Bool = false,
        _ check: (JSONValue) -> Check<Value>
    ) -> Value? {
        guard let node = self.node(key, required: required, expected: expected) else { return nil }
        switch check(node.value) {
        case .valid(let value):
            return value
        case .wrongType:
            self.reportTypeMismatch(key, expected: expected, node: node)
        case .invalid(let message):
            self.diagnostics.report(.invalidValue(message, keyPath: self.keyPath(key), at: node.location))
        }
        return nil
    }

    /// Reports every key that no accessor asked for.
    func reportUnknownKeys() {
        for (member, isKnown) in zip(self.object, self.isKnown) where !isKnown {
            self.diagnostics.report(.unknownKey(member.key, keyPath: self.keyPath(member.key), at: member.keyLocation))
        }
    }

    private func reportTypeMismatch(_ key: String, expected: String, node: JSONValue.Node) {
        self.diagnostics.report(
            .typeMismatch(expected: expected, got: node.value, keyPath: self.keyPath(key), at: node.location)
        )
    }
}

// MARK: - Typed accessors

extension ConfigurationObjectReader {
    /// A string, optionally checked by `problem`, which returns why a string is not allowed.
    mutating func string(
        _ key: String,
        required: Bool = false,
        problem: (String) -> String? = { _ in nil }
    ) -> String? {
        self.value(key, expected: "string", required: required) { value in
            guard case .string(let string) = value else { return .wrongType }
            return problem(string).map { .invalid($0) } ?? .valid(string)
        }
    }

    mutating func bool(_ key: String) -> Bool? {
        self.value(key, expected: "boolean") { value in
            guard case .bool(let bool) = value else { return .wrongType }
            return .valid(bool)
        }
    }

    /// A whole number within `range`; fractions are type mismatches, `1e3` is 1000.
    mutating func integer(_ key: String, in range: ClosedRange<Int>, required: Bool = false) -> Int? {
        self.value(key, expected: "integer", required: required) { value in
            guard case .number(let number) = value else { return .wrongType }
            switch number.integerConversion(as: Int.self) {
            case .value(let integer) where range.contains(integer):
                return .valid(integer)
            case .notInteger:
                return .wrongType
            case .value, .outOfRange:
                return .invalid("\(number.literal) is out of range \(range.lowerBound)...\(range.upperBound)")
            }
        }
    }

    /// A number of seconds, up to a day; zero only when `allowsZero`.
    mutating func seconds(_ key: String, allowsZero: Bool) -> Duration? {
        let limit = 86_400.0
        return self.value(key, expected: "number of seconds") { value in
            guard case .number(let number) = value else { return .wrongType }
            let seconds = number.doubleValue
            guard (allowsZero ? seconds >= 0 : seconds > 0) && seconds <= limit else {
                let lowest = allowsZero ? "from 0" : "greater than 0 and"
                return .invalid("\(number.literal) is out of range; expected seconds \(lowest) up to 86400 (a day)")
            }
            return .valid(.seconds(seconds))
        }
    }

    /// A nested object's reader; the caller must call ``reportUnknownKeys()`` on it when done.
    mutating func object(_ key: String, required: Bool = false) -> ConfigurationObjectReader? {
        guard let node = self.node(key, required: required, expected: "object") else { return nil }
        return ConfigurationObjectReader(node, keyPath: self.keyPath(key), diagnostics: self.diagnostics)
    }

    /// An array of strings, each checked by `problem`; element errors name the element.
    mutating func strings(_ key: String, problem: (String) -> String?) -> [String]? {
        guard let node = self.node(key) else { return nil }
        guard case .array(let elements) = node.value else {
            self.reportTypeMismatch(key, expected: "array of strings", node: node)
            return nil
        }
        var strings: [String] = []
        var isValid = true
        for (index, element) in elements.enumerated() {
            let elementKeyPath = self.keyPath(key).appendingKeyPath(index: index)
            guard case .string(let string) = element.value else {
                self.diagnostics.report(
                    .typeMismatch(expected: "string", got: element.value, keyPath: elementKeyPath, at: element.location)
                )
                isValid = false
                continue
            }
            if let message = problem(string) {
                self.diagnostics.report(.invalidValue(message, keyPath: elementKeyPath, at: element.location))
                isValid = false
            }
            strings.append(string)
        }
        return isValid ? strings : nil
    }
}
