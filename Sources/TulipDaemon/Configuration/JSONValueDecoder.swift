/// Decodes `Decodable` values, such as a plugin's options, from a parsed ``JSONValue``, strictly.
///
/// Strict means:
/// - An object key that the type never asked about is an ``ConfigurationError/Code/unknownKey`` error,
///   because in a configuration file it is nearly always a typo (`formt` for `format`). A key counts as
///   asked about once `init(from:)` decodes it or calls `contains(_:)` or `decodeIfPresent` on it.
/// - Numbers convert to integer types only when they are whole and in range: `1.5` is a type mismatch
///   and `300` for a `UInt8` is an invalid value; `1e3` is 1000.
/// - No coercion: a string never decodes as a number or a boolean.
///
/// Every error is a ``ConfigurationError`` with the full key path, starting at the `keyPath` you pass
/// (`listeners[3].options.items[0].name`), and the line and column of the offending value when known.
///
/// ```swift
/// struct DaytimeOptions: Decodable { var format: String }
/// let options = try JSONValueDecoder().decode(DaytimeOptions.self, from: node, keyPath: "listeners[6].options")
/// // or, for a loaded listener: try listener.decodeOptions(as: DaytimeOptions.self)
/// ```
public struct JSONValueDecoder: Sendable {
    /// Values handed to every `init(from:)` as `decoder.userInfo`.
    public var userInfo: [CodingUserInfoKey: any Sendable]

    /// Makes a decoder with no user info.
    public init() {
        self.userInfo = [:]
    }

    /// Decodes a value of type `T`.
    ///
    /// - Parameters:
    ///   - type: The type to decode.
    ///   - value: The JSON to decode it from.
    ///   - keyPath: Where `value` sits in the configuration, such as `listeners[3].options`; error key
    ///     paths start with it.
    ///   - location: Where `value` starts in the file, for errors about `value` itself; values nested
    ///     inside it carry their own positions.
    /// - Returns: The decoded value.
    /// - Throws: ``ConfigurationError``. Only the first problem is reported: the one `init(from:)` hit,
    ///   or, when decoding succeeded, the earliest unknown key.
    public func decode<T: Decodable>(
        _ type: T.Type,
        from value: JSONValue,
        keyPath: String,
        location: JSONValue.Location? = nil
    ) throws(ConfigurationError) -> T {
        let context = Context(
            rootKeyPath: keyPath,
            userInfo: self.userInfo.mapValues { $0 as Any }
        )
        let decoded: T
        do {
            decoded = try context.decode(type, from: value, codingPath: [])
        } catch let error as ConfigurationError {
            throw error
        } catch let error as DecodingError {
            throw Self.configurationError(for: error, root: value, rootKeyPath: keyPath, rootLocation: location)
        } catch {
            throw .invalidValue(String(describing: error), keyPath: keyPath, at: location)
        }
        if let (keyPath, member) = context.firstUnknownMember() {
            throw .unknownKey(member.key, keyPath: keyPath, at: member.keyLocation)
        }
        return decoded
    }

    /// Decodes a value of type `T` from a node, using the node's position for errors about it.
    ///
    /// - Parameters:
    ///   - type: The type to decode.
    ///   - node: The JSON to decode it from, with its position.
    ///   - keyPath: Where `node` sits in the configuration; error key paths start with it.
    /// - Returns: The decoded value.
    /// - Throws: ``ConfigurationError``, as ``decode(_:from:keyPath:location:)`` does.
    public func decode<T: Decodable>(
        _ type: T.Type,
        from node: JSONValue.Node,
        keyPath: String
    ) throws(ConfigurationError) -> T {
        try self.decode(type, from: node.value, keyPath: keyPath, location: node.location)
    }
}

// MARK: - Error conversion

extension JSONValueDecoder {
    // Containers throw the standard `DecodingError`s, which `init(from:)` implementations may catch and
    // throw themselves; only here, once, are coding paths turned into key paths and source positions.
    private static func configurationError(
        for error: DecodingError,
        root: JSONValue,
        rootKeyPath: String,
        rootLocation: JSONValue.Location?
    ) -> ConfigurationError {
        func resolve(_ codingPath: [any CodingKey]) -> (keyPath: String, location: JSONValue.Location?, exists: Bool) {
            var keyPath = rootKeyPath
            var value: JSONValue? = root
            var location = rootLocation
            for key in codingPath {
                keyPath = keyPath.appendingKeyPathComponent(key)
                var child: JSONValue.Node?
                switch value {
                case .array(let elements)?:
                    child = key.intValue.flatMap { elements.indices.contains($0) ? elements[$0] : nil }
                case .object(let object)?:
                    child = object[key.stringValue]
                default:
                    child = nil
                }
                value = child?.value
                location = child?.location ?? location
            }
            return (keyPath, location, value != nil)
        }

        switch error {
        case .typeMismatch(_, let context):
            let (keyPath, location, _) = resolve(context.codingPath)
            return ConfigurationError(.typeMismatch, context.debugDescription, keyPath: keyPath, location: location)
        case .valueNotFound(_, let context):
            let (keyPath, location, exists) = resolve(context.codingPath)
            // A path that exists holds a null; one that does not ran past the end of an array.
            let code: ConfigurationError.Code = exists ? .typeMismatch : .invalidValue
            return ConfigurationError(code, context.debugDescription, keyPath: keyPath, location: location)
        case .keyNotFound(let key, let context):
            let (keyPath, location, _) = resolve(context.codingPath)
            return .missingKey(key.stringValue, keyPath: keyPath.appendingKeyPath(key: key.stringValue), at: location)
        case .dataCorrupted(let context):
            let (keyPath, location, _) = resolve(context.codingPath)
            return .invalidValue(context.debugDescription, keyPath: keyPath, at: location)
        @unknown default:
            return .invalidValue(String(describing: error), keyPath: rootKeyPath, at: rootLocation)
        }
    }
}

// MARK: - Decoding context

extension JSONValueDecoder {
    // Shared by every decoder and container of one `decode` call: the user info and which keys of which
    // objects `init(from:)` implementations asked about. Confined to the calling thread, like the call.
    final class Context {
        let rootKeyPath: String
        let userInfo: [CodingUserInfoKey: Any]
        // Keyed by key path, so two containers opened on the same object share one record.
        private var usagesByKeyPath: [String: ObjectUsage] = [:]

        init(rootKeyPath: String, userInfo: [CodingUserInfoKey: Any]) {
            self.rootKeyPath = rootKeyPath
            self.userInfo = userInfo
        }

        func keyPath(for codingPath: [any CodingKey]) -> String {
            codingPath.reduce(self.rootKeyPath) { $0.appendingKeyPathComponent($1) }
        }

        func usage(of object: JSONObject, codingPath: [any CodingKey]) -> ObjectUsage {
            let keyPath = self.keyPath(for: codingPath)
            if let usage = self.usagesByKeyPath[keyPath] { return usage }
            let usage = ObjectUsage(object: object, keyPath: keyPath)
            self.usagesByKeyPath[keyPath] = usage
            return usage
        }

        /// The earliest member, by position, that no container asked about, with its full key path.
        func firstUnknownMember() -> (keyPath: String, member: JSONObject.Member)? {
            var first: (keyPath: String, member: JSONObject.Member)?
            for usage in self.usagesByKeyPath.values {
                for (index, member) in usage.object.enumerated() where !usage.isAccessed[index] {
                    if let current = first, current.member.keyLocation <= member.keyLocation { continue }
                    first = (usage.keyPath.appendingKeyPath(key: member.key), member)
                }
            }
            return first
        }

        /// Decodes `T`, directly for the scalar types and through `init(from:)` for the rest.
        func decode<T: Decodable>(_ type: T.Type, from value: JSONValue, codingPath: [any CodingKey]) throws -> T {
            if let scalarType = type as? any Scalar.Type {
                // `scalarType` is `T` itself, so the value it returns is a `T`.
                return try scalarType.decode(from: value, codingPath: codingPath) as! T
            }
            let decoded = try T(from: NodeDecoder(value: value, codingPath: codingPath, context: self))
            // A type that never opened a keyed container (an empty options struct) asked about none
            // of the object's keys: recording the object makes every key in it unknown.
            if case .object(let object) = value, !object.isEmpty {
                _ = self.usage(of: object, codingPath: codingPath)
            }
            return decoded
        }
    }

    // Which members of one object have been asked about.
    final class ObjectUsage {
        let object: JSONObject
        let keyPath: String
        private(set) var isAccessed: [Bool]

        init(object: JSONObject, keyPath: String) {
            self.object = object
            self.keyPath = keyPath
            self.isAccessed = Array(repeating: false, count: object.count)
        }

        /// Records that `key` was asked about and returns its member's position, if the object has it.
        func access(_ key: String) -> Int? {
            guard let index = self.object.index(forKey: key) else { return nil }
            self.isAccessed[index] = true
            return index
        }
    }
}

// MARK: - Key paths from coding paths

extension String {
    // Array positions come from this decoder's own `IndexKey`; every other key names an object member,
    // even a dictionary key such as "1" that also has an `intValue`.
    func appendingKeyPathComponent(_ key: any CodingKey) -> String {
        if let index = key as? JSONValueDecoder.IndexKey { return self.appendingKeyPath(index: index.index) }
        return self.appendingKeyPath(key: key.stringValue)
    }
}
