/// A JSON object: members in document order, with unique keys and a fast lookup by key.
///
/// The parser rejects duplicate keys, so an object never holds two members with the same key. Lookup by
/// key scans small objects and uses a hash index for large ones, so decoding a map of thousands of
/// entries stays linear.
///
/// Equality compares members in order (keys and values, not positions): `{"a":1,"b":2}` and
/// `{"b":2,"a":1}` differ.
public struct JSONObject: Sendable, Hashable, RandomAccessCollection {
    /// One `"key": value` pair.
    public struct Member: Sendable, Hashable {
        /// The key, with escapes decoded.
        public var key: String
        /// Where the key's opening quote is.
        public var keyLocation: JSONValue.Location
        /// The value and where it starts.
        public var value: JSONValue.Node

        /// Makes a member.
        public init(key: String, keyLocation: JSONValue.Location, value: JSONValue.Node) {
            self.key = key
            self.keyLocation = keyLocation
            self.value = value
        }

        /// Whether key and value are equal; positions do not count.
        public static func == (lhs: Member, rhs: Member) -> Bool { lhs.key == rhs.key && lhs.value == rhs.value }

        /// Hashes key and value, consistent with `==`.
        public func hash(into hasher: inout Hasher) {
            hasher.combine(self.key)
            hasher.combine(self.value)
        }
    }

    // Below this many members a linear scan beats hashing; configuration objects are nearly all this small.
    private static let indexThreshold = 12

    /// The members in document order.
    public private(set) var members: [Member]
    private var positionsByKey: [String: Int]?

    /// Makes an empty object.
    public init() {
        self.members = []
        self.positionsByKey = nil
    }

    /// Adds a member at the end, unless the object already has one with the same key.
    ///
    /// - Returns: `true` if the member was added, `false` if the key was already present.
    public mutating func append(_ member: Member) -> Bool {
        guard self.index(forKey: member.key) == nil else { return false }
        self.appendAssumingUniqueKey(member)
        return true
    }

    // The parser checks for a duplicate before it parses the value, so it need not look twice.
    mutating func appendAssumingUniqueKey(_ member: Member) {
        self.members.append(member)
        if self.positionsByKey != nil {
            self.positionsByKey?[member.key] = self.members.count - 1
        } else if self.members.count >= Self.indexThreshold {
            self.positionsByKey = Dictionary(
                uniqueKeysWithValues: self.members.enumerated().lazy.map { ($0.element.key, $0.offset) }
            )
        }
    }

    /// The position of the member with the given key, if any.
    public func index(forKey key: String) -> Int? {
        if let positions = self.positionsByKey { return positions[key] }
        return self.members.firstIndex { $0.key == key }
    }

    /// The value for `key`, with its position, or `nil` if the object has no such key.
    public subscript(key: String) -> JSONValue.Node? {
        self.index(forKey: key).map { self.members[$0].value }
    }

    /// The keys in document order.
    public var keys: [String] { self.members.map(\.key) }

    /// The position of the first member.
    public var startIndex: Int { self.members.startIndex }
    /// The position past the last member.
    public var endIndex: Int { self.members.endIndex }
    /// The member at `position`, in document order.
    public subscript(position: Int) -> Member { self.members[position] }

    /// Whether both objects have equal members in the same order.
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool { lhs.members == rhs.members }

    /// Hashes the members in order, consistent with `==`.
    public func hash(into hasher: inout Hasher) { hasher.combine(self.members) }
}
