import NIOCore
import Testing
import TulipPlugins

struct TokenBucketTableTests {
    private let start = NIODeadline.uptimeNanoseconds(1_000_000_000)

    @Test func aQuietSourceGetsTheBurstThenTheRate() {
        var table = TokenBucketTable<Int>(limit: RateLimit(perSecond: 50, burst: 100))
        let allowed = (0..<300).filter { _ in table.allow(1, now: self.start) }.count
        #expect(allowed == 100)
        // 50 a second: after 100 ms, 5 more.
        let later = self.start + .milliseconds(100)
        let refilled = (0..<20).filter { _ in table.allow(1, now: later) }.count
        #expect(refilled == 5)
        // Refill stops at the burst.
        let muchLater = self.start + .seconds(3600)
        let capped = (0..<300).filter { _ in table.allow(1, now: muchLater) }.count
        #expect(capped == 100)
    }

    @Test func sourcesAreIndependent() {
        var table = TokenBucketTable<Int>(limit: RateLimit(perSecond: 1, burst: 2))
        let first = table.allow(1, now: self.start)
        let second = table.allow(1, now: self.start)
        let third = table.allow(1, now: self.start)
        let other = table.allow(2, now: self.start)
        #expect(first && second && !third && other)
    }

    @Test func aSpoofedSourceFloodCannotGrowTheTableBeyondItsCapacity() {
        var table = TokenBucketTable<Int>(limit: .default, capacity: 1_000)
        for source in 0..<100_000 { _ = table.allow(source, now: self.start) }
        #expect(table.count <= 1_000)
        // A source seen recently is still limited.
        var small = TokenBucketTable<Int>(limit: RateLimit(perSecond: 1, burst: 1), capacity: 1_000)
        let firstTime = small.allow(7, now: self.start)
        for source in 0..<400 { _ = small.allow(10_000 + source, now: self.start) }
        let secondTime = small.allow(7, now: self.start)
        #expect(firstTime && !secondTime)
    }

    @Test func theClockGoingBackwardsGivesNoTokens() {
        var table = TokenBucketTable<Int>(limit: RateLimit(perSecond: 1000, burst: 1))
        let first = table.allow(1, now: self.start)
        let backwards = table.allow(1, now: self.start - .seconds(10))
        #expect(first && !backwards)
    }
}
