/// A JSON value as ``JSONParser`` reads it: object key order kept, numbers kept exact, every element of an
/// array and every object member tagged with where it starts in the source.
///
/// Positions live in ``Node``, which pairs a value with its ``Location``; arrays hold nodes and objects
/// hold members whose values are nodes, so any value found by walking down from a parsed root knows its
/// line and column. That is what lets configuration errors point at `tulipd.json:9:31`.
///
/// Equality and hashing ignore positions: two values are equal when their content is, so a
/// configuration re-read after an edit elsewhere in the file still compares equal. Numbers compare by
/// their literal text (see ``JSONNumber``), and objects compare member by member in order.
public enum JSONValue: Sendable, Hashable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, kept as its literal text so integers of any size stay exact.
    case number(JSONNumber)
    /// A string.
    case string(String)
    /// An array; each element carries its position.
    case array([Node])
    /// An object; members keep their order, keys are unique.
    case object(JSONObject)
}

// MARK: - Positions

extension JSONValue {
    /// A position in JSON source text.
    ///
    /// Both numbers are 1-based. ``column`` counts Unicode scalars from the start of the line, so `é`
    /// written as two UTF-8 bytes is one column and a tab is one column. Only `\n` ends a line; a `\r`
    /// before it is the last character of its line.
    public struct Location: Hashable, Sendable, Comparable, CustomStringConvertible {
        /// The 1-based line.
        public var line: Int
        /// The 1-based column, in Unicode scalars.
        public var column: Int

        /// Makes a location from a 1-based line and column.
        public init(line: Int, column: Int) {
            self.line = line
            self.column = column
        }

        /// Whether `lhs` comes before `rhs` in the document.
        public static func < (lhs: Location, rhs: Location) -> Bool {
            (lhs.line, lhs.column) < (rhs.line, rhs.column)
        }

        /// The location as `LINE:COLUMN`.
        public var description: String { "\(self.line):\(self.column)" }
    }

    /// A value together with where it starts in the source.
    ///
    /// Equality and hashing look at ``value`` only.
    public struct Node: Sendable, Hashable {
        /// The value.
        public var value: JSONValue
        /// Where the value's first character is.
        public var location: Location

        /// Pairs a value with its position.
        public init(_ value: JSONValue, at location: Location) {
            self.value = value
            self.location = location
        }

        /// Whether the values are equal; positions do not count.
        public static func == (lhs: Node, rhs: Node) -> Bool { lhs.value == rhs.value }

        /// Hashes the value only, consistent with `==`.
        public func hash(into hasher: inout Hasher) { hasher.combine(self.value) }
    }
}

// MARK: - Inspecting

extension JSONValue {
    /// The JSON type name, as error messages use it: `null`, `boolean`, `number`, `string`, `array`, `object`.
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// The type name, followed by the value itself for scalars; for messages such as `got string "abc"`.
    var briefDescription: String {
        switch self {
        case .null:
            return "null"
        case .bool(let value):
            return "boolean \(value)"
        case .number(let number):
            return "number \(number.literal)"
        case .string(let string):
            // Long strings would drown the message; the line and column point at the rest.
            let limit = 40
            let shown = string.count > limit ? String(string.prefix(limit)) + "…" : string
            return "string \(shown.debugDescription)"
        case .array, .object:
            return self.typeName
        }
    }
}
