import Testing

@testable import TulipDaemon

struct JSONParserTests {
    // MARK: - Valid documents

    struct ValidDocument: Sendable, CustomTestStringConvertible {
        var text: String
        /// The value written back as compact JSON; numbers keep their literal, strings are decoded.
        var compact: String
        var testDescription: String { self.text.debugDescription }
    }

    static let validDocuments: [ValidDocument] = [
        ValidDocument(text: "null", compact: "null"),
        ValidDocument(text: " true ", compact: "true"),
        ValidDocument(text: "\t\r\nfalse\n", compact: "false"),
        ValidDocument(text: "0", compact: "0"),
        ValidDocument(text: "-0", compact: "-0"),
        ValidDocument(text: "-12.5e+3", compact: "-12.5e+3"),
        ValidDocument(text: "1E-7", compact: "1E-7"),
        ValidDocument(text: "18446744073709551616", compact: "18446744073709551616"),
        ValidDocument(text: #""""#, compact: #""""#),
        ValidDocument(text: #""plain ascii""#, compact: #""plain ascii""#),
        ValidDocument(text: #""\"\\\/\b\f\n\r\t""#, compact: "\"\"\\/\u{08}\u{0C}\n\r\t\""),
        ValidDocument(text: #""caf\u00e9 \u65E5 \ud83d\ude00""#, compact: "\"café 日 😀\""),
        ValidDocument(text: "\"héllo wörld 😀\"", compact: "\"héllo wörld 😀\""),
        ValidDocument(text: #""\u0000""#, compact: "\"\u{0}\""),
        ValidDocument(text: "[]", compact: "[]"),
        ValidDocument(text: "{}", compact: "{}"),
        ValidDocument(text: "[1, [2, [3]], {}]", compact: "[1,[2,[3]],{}]"),
        ValidDocument(text: #"{"b": 1, "a": {"c": [true, null]}}"#, compact: #"{"b":1,"a":{"c":[true,null]}}"#),
        ValidDocument(text: "\u{FEFF}{\"bom\": 1}", compact: #"{"bom":1}"#),
    ]

    @Test(arguments: Self.validDocuments)
    func parsesValidDocument(_ document: ValidDocument) throws {
        let root = try JSONParser().parse(document.text.utf8)
        #expect(Self.compact(root.value) == document.compact)
    }

    // MARK: - Invalid documents

    struct InvalidDocument: Sendable, CustomTestStringConvertible {
        var bytes: [UInt8]
        var line: Int
        var column: Int
        var message: String

        init(_ text: String, _ line: Int, _ column: Int, _ message: String) {
            self.init(bytes: Array(text.utf8), line, column, message)
        }

        init(bytes: [UInt8], _ line: Int, _ column: Int, _ message: String) {
            self.bytes = bytes
            self.line = line
            self.column = column
            self.message = message
        }

        var testDescription: String { "\(self.message) at \(self.line):\(self.column)" }
    }

    static let invalidDocuments: [InvalidDocument] = [
        InvalidDocument("", 1, 1, "unexpected end of input; expected a JSON value"),
        InvalidDocument("  \n ", 2, 2, "unexpected end of input; expected a JSON value"),
        InvalidDocument("{", 1, 2, "unexpected end of input; expected string key or '}'"),
        InvalidDocument(#"{"a""#, 1, 5, "unexpected end of input; expected ':' after object key"),
        InvalidDocument(#"{"a" 1}"#, 1, 6, "expected ':' after object key"),
        InvalidDocument(#"{"a": }"#, 1, 7, "expected a JSON value"),
        InvalidDocument(#"{"a": 1 "b": 2}"#, 1, 9, "expected ',' or '}' after object member"),
        InvalidDocument(#"{"a": 1"#, 1, 8, "unexpected end of input; expected ',' or '}' after object member"),
        InvalidDocument("{a: 1}", 1, 2, "expected string key or '}'"),
        InvalidDocument(#"{"a": 1, b: 2}"#, 1, 10, "expected string key"),
        InvalidDocument(#"{"a": 1,}"#, 1, 8, "trailing comma in object"),
        InvalidDocument("[1, 2,]", 1, 6, "trailing comma in array"),
        InvalidDocument("[1 2]", 1, 4, "expected ',' or ']' after array element"),
        InvalidDocument("[1,", 1, 4, "unexpected end of input; expected a JSON value"),
        InvalidDocument("[1] 2", 1, 5, "trailing data after JSON value"),
        InvalidDocument("{} {}", 1, 4, "trailing data after JSON value"),
        InvalidDocument("'a'", 1, 1, "expected a JSON value"),
        InvalidDocument("tru", 1, 1, "invalid literal; expected 'true'"),
        InvalidDocument("[nul]", 1, 2, "invalid literal; expected 'null'"),
        InvalidDocument("NaN", 1, 1, "expected a JSON value"),
        InvalidDocument("01", 1, 1, "leading zeros are not allowed in numbers"),
        InvalidDocument("[-007]", 1, 3, "leading zeros are not allowed in numbers"),
        InvalidDocument("-", 1, 2, "unexpected end of input; expected digit after '-'"),
        InvalidDocument("-x", 1, 2, "expected digit after '-'"),
        InvalidDocument("+1", 1, 1, "expected a JSON value"),
        InvalidDocument(".5", 1, 1, "expected a JSON value"),
        InvalidDocument("[1.]", 1, 4, "expected digit after decimal point"),
        InvalidDocument("1e", 1, 3, "unexpected end of input; expected digit in exponent"),
        InvalidDocument("[1e+]", 1, 5, "expected digit in exponent"),
        InvalidDocument(#""abc"#, 1, 1, "unterminated string"),
        InvalidDocument("[\"ab\ncd\"]", 1, 2, "unterminated string"),
        InvalidDocument(#""abc\"#, 1, 1, "unterminated string"),
        InvalidDocument("\"a\tb\"", 1, 3, "control character U+0009 in string must be escaped"),
        InvalidDocument("\"\u{1F}\"", 1, 2, "control character U+001F in string must be escaped"),
        InvalidDocument(#""a\x""#, 1, 3, "invalid escape sequence '\\x' in string"),
        InvalidDocument(#""\u12G4""#, 1, 2, "invalid escape sequence in string; \\u needs four hex digits"),
        InvalidDocument(#""\u12""#, 1, 2, "invalid escape sequence in string; \\u needs four hex digits"),
        InvalidDocument(#""\ud800""#, 1, 2, "unpaired surrogate \\uD800 in string"),
        InvalidDocument(#""x\uDC00""#, 1, 3, "unpaired surrogate \\uDC00 in string"),
        InvalidDocument(#""\ud800\u0041""#, 1, 2, "unpaired surrogate \\uD800 in string"),
        InvalidDocument(#""\ud800\n""#, 1, 2, "unpaired surrogate \\uD800 in string"),
        InvalidDocument(bytes: [0x22, 0xC3, 0x28, 0x22], 1, 2, "invalid UTF-8 in string"),
        InvalidDocument(bytes: [0x22, 0xC0, 0xAF, 0x22], 1, 2, "invalid UTF-8 in string"),
        InvalidDocument(bytes: [0x22, 0xED, 0xA0, 0x80, 0x22], 1, 2, "invalid UTF-8 in string"),
        InvalidDocument(bytes: [0x22, 0xF4, 0x90, 0x80, 0x80, 0x22], 1, 2, "invalid UTF-8 in string"),
        InvalidDocument(bytes: [0x22, 0x61, 0xFF, 0x22], 1, 3, "invalid UTF-8 in string"),
        InvalidDocument(bytes: [0x22, 0xE6, 0x97], 1, 2, "invalid UTF-8 in string"),
        InvalidDocument(bytes: [0x5B, 0xFF, 0x5D], 1, 2, "expected a JSON value"),
        // Columns count Unicode scalars, so the multibyte characters before the error count once each.
        InvalidDocument(#"{"é": 1, "日本": 2 3}"#, 1, 18, "expected ',' or '}' after object member"),
        InvalidDocument("[\"😀\", 1 2]", 1, 9, "expected ',' or ']' after array element"),
        InvalidDocument("{\n  \"a\": 1,\n  \"b\": 2\n  \"c\": 3\n}", 4, 3, "expected ',' or '}' after object member"),
        InvalidDocument("[\n\n  \"ünïcödé\", \"\\q\"\n]", 3, 15, "invalid escape sequence '\\q' in string"),
        InvalidDocument("\r\n\r\n  [1,\r\n  ]", 3, 5, "trailing comma in array"),
        InvalidDocument("\u{FEFF}[1, x]", 1, 5, "expected a JSON value"),
        InvalidDocument(
            "{\n  \"log\": {\"level\": \"info\", \"format\": \"text\"},\n  \"shutdown\": @\n}\n",
            3,
            15,
            "expected a JSON value"
        ),
    ]

    @Test(arguments: Self.invalidDocuments)
    func rejectsInvalidDocument(_ document: InvalidDocument) throws {
        let error = try #require(throws: ConfigurationError.self) { try JSONParser().parse(document.bytes) }
        #expect(error.code == .syntax)
        #expect(error.message == document.message)
        #expect(error.line == document.line)
        #expect(error.column == document.column)
        #expect(error.keyPath == "")
        #expect(error.file == nil)
    }

    @Test
    func syntaxErrorDescriptionReadsLikeACompilerDiagnostic() throws {
        var error = try #require(throws: ConfigurationError.self) {
            try JSONParser().parse("{\n  \"a\": 1,\n  \"port\": 700 \"x\"\n}".utf8)
        }
        error.file = "tulipd.json"
        #expect(error.description == "tulipd.json:3:15: syntax error: expected ',' or '}' after object member")
    }

    // MARK: - Nesting

    @Test
    func acceptsNestingUpToTheLimit() throws {
        let text = String(repeating: "[", count: 256) + String(repeating: "]", count: 256)
        var value = try JSONParser().parse(text.utf8).value
        var depth = 0
        while case .array(let elements) = value {
            depth += 1
            guard let first = elements.first else { break }
            value = first.value
        }
        #expect(depth == 256)
    }

    @Test
    func rejectsNestingBeyondTheLimit() throws {
        let text = String(repeating: "[", count: 257) + String(repeating: "]", count: 257)
        let error = try #require(throws: ConfigurationError.self) { try JSONParser().parse(text.utf8) }
        #expect(error.message == "nesting depth exceeds the limit of 256")
        #expect(error.line == 1)
        #expect(error.column == 257)
    }

    @Test
    func honoursACustomDepthLimit() throws {
        _ = try JSONParser(maximumDepth: 2).parse(#"{"a": [1]}"#.utf8)
        let error = try #require(throws: ConfigurationError.self) {
            try JSONParser(maximumDepth: 2).parse(#"{"a": [{}]}"#.utf8)
        }
        #expect(error.message == "nesting depth exceeds the limit of 2")
        #expect(error.column == 8)
    }

    // MARK: - Duplicate keys

    @Test
    func rejectsDuplicateKeyNamingItsKeyPath() throws {
        let text = """
            {
              "listeners": [
                {"name": "a"},
                {"tcp": {"port": 1, "host": "x", "port": 2}}
              ]
            }
            """
        let error = try #require(throws: ConfigurationError.self) { try JSONParser().parse(text.utf8) }
        #expect(error.code == .duplicateKey)
        #expect(error.keyPath == "listeners[1].tcp.port")
        #expect(error.line == 4)
        #expect(error.column == 38)
        #expect(error.message == "duplicate key 'port' (first at 4:14)")
    }

    @Test
    func rejectsDuplicateKeyInLargeObject() throws {
        let members = (0..<100).map { "\"k\($0)\": \($0)" }.joined(separator: ", ")
        let error = try #require(throws: ConfigurationError.self) {
            try JSONParser().parse("{\(members), \"k42\": 0}".utf8)
        }
        #expect(error.code == .duplicateKey)
        #expect(error.keyPath == "k42")
    }

    @Test
    func quotesUnusualKeysInDuplicateKeyPath() throws {
        let error = try #require(throws: ConfigurationError.self) {
            try JSONParser().parse(#"{"a.b": [{"x y": 1, "x y": 2}]}"#.utf8)
        }
        #expect(error.keyPath == #"["a.b"][0]["x y"]"#)
    }

    // MARK: - Positions

    @Test
    func recordsThePositionOfEveryValueAndKey() throws {
        let text = "{\n  \"ä\": [true, {\"k\": \"v\"}],\n\t\"n\": -1\n}"
        let root = try JSONParser().parse(text.utf8)
        #expect(root.location == JSONValue.Location(line: 1, column: 1))
        guard case .object(let object) = root.value else {
            Issue.record("expected an object")
            return
        }
        #expect(object.keys == ["ä", "n"])
        #expect(object[0].keyLocation == JSONValue.Location(line: 2, column: 3))
        let array = try #require(object["ä"])
        #expect(array.location == JSONValue.Location(line: 2, column: 8))
        guard case .array(let elements) = array.value, case .object(let inner) = elements[1].value else {
            Issue.record("expected an array holding an object")
            return
        }
        #expect(elements[0].location == JSONValue.Location(line: 2, column: 9))
        #expect(elements[1].location == JSONValue.Location(line: 2, column: 15))
        #expect(inner["k"]?.location == JSONValue.Location(line: 2, column: 21))
        #expect(object[1].keyLocation == JSONValue.Location(line: 3, column: 2))
        #expect(object["n"]?.location == JSONValue.Location(line: 3, column: 7))
    }

    @Test
    func equalityIgnoresPositionsAndWhitespace() throws {
        let compact = try JSONParser().parse(#"{"a":[1,"x"],"b":null}"#.utf8)
        let spread = try JSONParser().parse("{\n  \"a\" : [ 1 , \"x\" ] ,\n  \"b\" : null\n}".utf8)
        let reordered = try JSONParser().parse(#"{"b":null,"a":[1,"x"]}"#.utf8)
        let otherLiteral = try JSONParser().parse(#"{"a":[1.0,"x"],"b":null}"#.utf8)
        #expect(compact == spread)
        #expect(compact.hashValue == spread.hashValue)
        #expect(compact != reordered)
        #expect(compact != otherLiteral)
    }

    @Test
    func parsesNonContiguousInput() throws {
        let bytes = #"{"a": [1, "é"]}"#.utf8.lazy.map { $0 }
        let root = try JSONParser().parse(bytes)
        #expect(Self.compact(root.value) == #"{"a":[1,"é"]}"#)
    }

    // MARK: - Numbers

    @Test
    func keepsIntegersExact() throws {
        let root = try JSONParser().parse("[18446744073709551615, -9223372036854775808, 9007199254740993]".utf8)
        guard case .array(let elements) = root.value,
            case .number(let big) = elements[0].value,
            case .number(let small) = elements[1].value,
            case .number(let odd) = elements[2].value
        else {
            Issue.record("expected three numbers")
            return
        }
        #expect(big.integerValue(as: UInt64.self) == UInt64.max)
        #expect(big.integerValue(as: Int64.self) == nil)
        #expect(small.integerValue(as: Int64.self) == Int64.min)
        #expect(odd.integerValue(as: Int.self) == 9_007_199_254_740_993)
    }

    @Test
    func convertsWholeNumbersWrittenWithFractionOrExponent() {
        #expect(JSONNumber(uncheckedLiteral: "1e3").integerValue(as: Int.self) == 1000)
        #expect(JSONNumber(uncheckedLiteral: "80.0").integerValue(as: UInt16.self) == 80)
        #expect(JSONNumber(uncheckedLiteral: "-0").integerValue(as: UInt8.self) == 0)
        #expect(JSONNumber(uncheckedLiteral: "1.5").integerValue(as: Int.self) == nil)
        #expect(JSONNumber(uncheckedLiteral: "1e300").integerValue(as: Int.self) == nil)
        #expect(JSONNumber(uncheckedLiteral: "2.5e1").doubleValue == 25)
        #expect(JSONNumber(uncheckedLiteral: "1e400").doubleValue == .infinity)
        #expect(JSONNumber(12).literal == "12")
        #expect(JSONNumber(0.25)?.literal == "0.25")
        #expect(JSONNumber(Double.nan) == nil)
    }

    // MARK: - Large input

    @Test(.timeLimit(.minutes(1)))
    func parsesMultiMegabyteDocumentInLinearTime() throws {
        // One line with many values catches column counting that restarts at each value.
        let element = #"{"id": 123456, "name": "listener-\u00e9-\"quoted\"", "tags": ["a", "b"], "ok": true}"#
        let count = 60_000
        let text = "[" + Array(repeating: element, count: count).joined(separator: ",") + "]"
        #expect(text.utf8.count > 4_000_000)
        let root = try JSONParser().parse(text.utf8)
        guard case .array(let elements) = root.value, case .object(let last) = elements.last?.value else {
            Issue.record("expected an array of objects")
            return
        }
        #expect(elements.count == count)
        #expect(last["name"]?.value == .string("listener-é-\"quoted\""))
        let expectedColumn = 2 + (count - 1) * (element.unicodeScalars.count + 1)
        #expect(elements[count - 1].location == JSONValue.Location(line: 1, column: expectedColumn))
    }

    // MARK: - Helpers

    static func compact(_ value: JSONValue) -> String {
        switch value {
        case .null: "null"
        case .bool(let bool): String(bool)
        case .number(let number): number.literal
        case .string(let string): "\"\(string)\""
        case .array(let elements): "[" + elements.map { Self.compact($0.value) }.joined(separator: ",") + "]"
        case .object(let object):
            "{" + object.map { "\"\($0.key)\":" + Self.compact($0.value.value) }.joined(separator: ",") + "}"
        }
    }
}
