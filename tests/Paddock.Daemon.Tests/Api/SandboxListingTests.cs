using Paddock.Daemon.Api;
using Paddock.Daemon.Store;
using Paddock.Daemon.Tests.Store;

namespace Paddock.Daemon.Tests.Api;

public sealed class SandboxListingTests
{
    [Fact]
    public void The_metadata_filter_is_decoded_the_way_the_SDK_encodes_it()
    {
        // What SandboxPaginator sends for {"my key": "a&b=c", user: "ann"}, after the framework decoded the parameter once:
        // each key and value percent-encoded, then the pairs joined and form-encoded again.
        var sent = "my%2520key=a%2526b%253Dc&user=ann";
        var filter = SandboxListing.ParseMetadataFilter(sent);
        Assert.Equal(2, filter.Count);
        Assert.Equal("a&b=c", filter["my key"]);
        Assert.Equal("ann", filter["user"]);
        Assert.Equal("abc", SandboxListing.ParseMetadataFilter("user=abc")["user"]);
        Assert.Empty(SandboxListing.ParseMetadataFilter(null));
        Assert.Throws<ApiRequestException>(() => SandboxListing.ParseMetadataFilter("novalue"));
    }

    [Fact]
    public void The_state_filter_accepts_both_encodings_and_refuses_unknown_states()
    {
        Assert.Equal((true, true), SandboxListing.ParseStateFilter([]));
        Assert.Equal((true, true), SandboxListing.ParseStateFilter(["running,paused"]));
        Assert.Equal((true, true), SandboxListing.ParseStateFilter(["paused", "running"]));
        Assert.Equal((false, true), SandboxListing.ParseStateFilter(["paused"]));
        Assert.Equal((true, false), SandboxListing.ParseStateFilter(["running"]));
        Assert.Throws<ApiRequestException>(() => SandboxListing.ParseStateFilter(["killed"]));
    }

    [Theory]
    [InlineData("0")]
    [InlineData("101")]
    [InlineData("-1")]
    [InlineData("ten")]
    public void Limits_outside_1_to_100_are_refused(string limit) =>
        Assert.Equal(400, Assert.Throws<ApiRequestException>(() => SandboxListing.ParseLimit(limit)).StatusCode);

    [Fact]
    public void Pages_follow_each_other_without_gaps_or_repeats_and_filters_apply()
    {
        var t = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        var records = Enumerable.Range(0, 7)
            .Select(i => TestRecords.Record($"s{i}", SandboxState.Running, t.AddSeconds(i % 3)) with
            {
                Metadata = new Dictionary<string, string> { ["team"] = i % 2 == 0 ? "even" : "odd" },
            })
            .ToList();

        foreach (var descending in new[] { true, false })
        {
            var seen = new List<string>();
            PageToken? after = null;
            for (var page = 0; page < 10; page++)
            {
                var (items, next, total) = SandboxListing.Apply(records, new SandboxListQuery { Limit = 3, After = after, Descending = descending });
                Assert.Equal(7, total);
                seen.AddRange(items.Select(r => r.SandboxId));
                if (next is null)
                {
                    break;
                }
                after = SandboxListing.DecodeToken(next);
            }
            Assert.Equal(7, seen.Count);
            Assert.Equal(7, seen.Distinct().Count());
            var times = seen.Select(id => records.Single(r => r.SandboxId == id).StartedAt).ToList();
            Assert.Equal(descending ? times.OrderDescending() : times.Order(), times);
        }

        var (even, _, evenTotal) = SandboxListing.Apply(records, new SandboxListQuery { Metadata = new Dictionary<string, string> { ["team"] = "even" } });
        Assert.Equal(4, evenTotal);
        Assert.All(even, r => Assert.Equal("even", r.Metadata["team"]));
        Assert.Empty(SandboxListing.Apply(records, new SandboxListQuery { IncludeRunning = false, IncludePaused = false }).Page);
    }

    [Fact]
    public void Running_and_paused_sandboxes_share_one_page_order_and_the_state_filter_picks_either()
    {
        var t = DateTimeOffset.FromUnixTimeMilliseconds(1_700_000_000_000);
        var records = Enumerable.Range(0, 6)
            .Select(i => TestRecords.Record($"s{i}", i % 2 == 0 ? SandboxState.Running : SandboxState.Paused, t.AddSeconds(i)))
            .ToList();

        var seen = new List<string>();
        PageToken? after = null;
        for (var page = 0; page < 10; page++)
        {
            var (items, next, _) = SandboxListing.Apply(records, new SandboxListQuery { Limit = 4, After = after });
            seen.AddRange(items.Select(r => r.SandboxId));
            if (next is null)
            {
                break;
            }
            after = SandboxListing.DecodeToken(next);
        }
        Assert.Equal(["s5", "s4", "s3", "s2", "s1", "s0"], seen);
        Assert.Equal(["s5", "s3", "s1"], SandboxListing.Apply(records, new SandboxListQuery { IncludeRunning = false }).Page.Select(r => r.SandboxId));
        Assert.Equal(["s4", "s2", "s0"], SandboxListing.Apply(records, new SandboxListQuery { IncludePaused = false }).Page.Select(r => r.SandboxId));
    }

    [Fact]
    public void A_forged_page_token_is_refused()
    {
        Assert.Throws<ApiRequestException>(() => SandboxListing.DecodeToken("!!!"));
        Assert.Throws<ApiRequestException>(() => SandboxListing.DecodeToken("bm9kb3Q"));
        var token = SandboxListing.EncodeToken(new PageToken(42, "abc"));
        Assert.Equal(new PageToken(42, "abc"), SandboxListing.DecodeToken(token));
    }
}
