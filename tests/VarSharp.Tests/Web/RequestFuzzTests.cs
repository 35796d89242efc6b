using System.Net;
using System.Text;
using VarSharp.Tests.Checkpoints.Fuzz;
using VarSharp.Tests.Support;
using Xunit.Abstractions;

namespace VarSharp.Tests.Web;

/// <summary>
/// Seeded mutations of valid request bodies (JSON text and an edit request with an image): every answer is 200 or a
/// 4xx with a one-sentence JSON error, never a 5xx; a generation only starts for bodies the server accepted.
/// </summary>
public sealed class RequestFuzzTests(TinyModelFolderFixture model, ITestOutputHelper output) : IClassFixture<TinyModelFolderFixture>
{
    private static IReadOnlyList<Mutator> TextMutators() =>
    [
        new("flip", 3, (rng, b) => Mutators.FlipBit(rng, b, 0, b.Length)),
        new("set", 3, (rng, b) => Mutators.SetByte(rng, b, 0, b.Length)),
        new("truncate", 1, Mutators.Truncate),
        new("insert", 2, Mutators.Insert),
        new("delete", 2, Mutators.Delete),
        new("digit", 3, (rng, b) =>
        {
            // Numbers are where ranges and types are checked: swap one digit for another, a sign or an exponent.
            var digits = Enumerable.Range(0, b.Length).Where(i => b[i] is >= (byte)'0' and <= (byte)'9').ToList();
            if (digits.Count == 0) return b;
            var m = (byte[])b.Clone();
            m[digits[rng.Next(digits.Count)]] = "0123456789-e.E+"u8[rng.Next(15)];
            return m;
        }),
    ];

    [Fact]
    public async Task MutatedBodiesAreAnsweredWithoutServerErrors()
    {
        using var server = VarServerFactory.ForModel(model.Dir, o => o with { MaxCount = 4 });
        using var client = server.CreateClient();
        using var img = TorchSharp.torch.rand(new long[] { 3, 8, 8 }, generator: new TorchSharp.torch.Generator(4)).mul(2).sub(1);
        var png = Convert.ToBase64String(VarSharp.Data.ImageIO.EncodePng(img));
        string[] seeds =
        [
            """{"model": "tiny", "class": 3, "count": 2, "cfg": 2.5, "top_k": 5, "top_p": 0.9, "seed": 11, "more_smooth": false}""",
            """{"class": "class 2", "count": 1, "seed": 9007199254740991}""",
            $$$"""{"class": 1, "edit": {"image": "{{{png}}}", "box": [2, 2, 6, 6], "outpaint": true, "known_threshold": 0.5}}""",
        ];
        var statuses = new SortedDictionary<int, int>();
        var violations = new List<string>();
        int cases = 0;
        for (int s = 0; s < seeds.Length; s++)
        {
            var original = Encoding.UTF8.GetBytes(seeds[s]);
            var mutators = TextMutators();
            int total = mutators.Sum(m => m.Weight);
            for (int i = 0; i < 150; i++, cases++)
            {
                var rng = new Random(HashCode.Combine(31, s, i));
                var bytes = original;
                for (int r = 0, rounds = 1 + rng.Next(3); r < rounds; r++)
                {
                    int x = rng.Next(total);
                    var m = mutators.First(mm => (x -= mm.Weight) < 0);
                    bytes = m.Apply(rng, bytes);
                }
                string path = rng.Next(4) == 0 ? "/v1/generate/stream" : "/v1/generate";
                using var response = await client.PostAsync(path, new ByteArrayContent(bytes));
                int status = (int)response.StatusCode;
                statuses[status] = statuses.GetValueOrDefault(status) + 1;
                var sent = Encoding.UTF8.GetString(bytes);
                string what = $"seed body {s} case {i} ({path}): {sent[..Math.Min(sent.Length, 120)]}";
                if (status >= 500) violations.Add($"{status} for {what}");
                else if (status >= 400)
                {
                    var text = await response.Content.ReadAsStringAsync();
                    string? error = null;
                    try { error = System.Text.Json.JsonDocument.Parse(text).RootElement.GetProperty("error").GetString(); }
                    catch (Exception e) when (e is System.Text.Json.JsonException or KeyNotFoundException or InvalidOperationException) { }
                    if (string.IsNullOrWhiteSpace(error) || error.Contains('\n') || !error.EndsWith('.'))
                        violations.Add($"{status} without a one-sentence JSON error for {what}: {text[..Math.Min(text.Length, 200)]}");
                }
                else if (status != 200) violations.Add($"{status} for {what}");
            }
        }
        output.WriteLine($"{cases} mutated bodies: {string.Join(", ", statuses.Select(kv => $"{kv.Value} × {kv.Key}"))}");
        Assert.True(violations.Count == 0, $"{violations.Count} violations:\n" + string.Join("\n", violations.Take(20)));
        Assert.True(statuses.GetValueOrDefault(200) > 0 && statuses.Keys.Any(k => k is >= 400 and < 500), "the mutations should reach both answers");
        var stats = server.Queue.Stats();
        Assert.Equal(stats.Accepted, stats.Completed);
        Assert.Equal(0, stats.Failed);
    }
}
