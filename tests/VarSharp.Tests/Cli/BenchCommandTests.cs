using System.Text.Json.Nodes;
using VarSharp.Tests.Support;

namespace VarSharp.Tests.Cli;

/// <summary>`bench` measures a model in one run and reports figures that are consistent with each other (no timing thresholds).</summary>
public sealed class BenchCommandTests : IDisposable
{
    private readonly TempFolder _temp = new();

    public void Dispose() => _temp.Dispose();

    [Fact]
    public void ReportsEveryFigureAndTheTwoSamplingPathsAgree()
    {
        var model = TinyModels.WriteFolder(_temp.File("model"));
        var json = _temp.File("bench.json");
        var run = CliRun.Of("bench", "--model", model, "--batch-sizes", "1,3", "--images", "3", "--repeats", "1", "--compare-batch", "2",
            "--cfg", "2.5", "--top-k", "3", "--top-p", "0", "--train-batch", "4", "--train-steps", "1", "--json", json);
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.Contains("speed-up over batch 1", run.Output);
        Assert.Contains("same tokens: yes", run.Output);

        var r = JsonNode.Parse(File.ReadAllText(json))!.AsObject();
        // The settings measured are recorded (scripts/bench-reference.sh gives the same ones to the official code).
        var settings = r["settings"]!.AsObject();
        Assert.Equal((2.5, 3, 0.0), (settings["cfg"]!.GetValue<double>(), settings["top_k"]!.GetValue<int>(), settings["top_p"]!.GetValue<double>()));
        var batches = r["batches"]!.AsArray();
        Assert.Equal([1, 3], batches.Select(b => b!["batch_size"]!.GetValue<int>()));
        Assert.Equal(1.0, batches[0]!["speed_up"]!.GetValue<double>());
        foreach (var b in batches) Assert.True(b!["images_per_second"]!.GetValue<double>() > 0);
        // The speed-up is the ratio of the two timings printed beside it.
        double cached = r["cached_seconds"]!.GetValue<double>(), recompute = r["recompute_seconds"]!.GetValue<double>();
        Assert.Equal(recompute / cached, r["cache_speed_up"]!.GetValue<double>(), 9);
        Assert.True(r["max_logit_difference"]!.GetValue<double>() < 1e-4);
        Assert.True(r["same_tokens"]!.GetValue<bool>());
        Assert.True(r["encode_images_per_second"]!.GetValue<double>() > 0 && r["decode_images_per_second"]!.GetValue<double>() > 0);
        var training = r["training"]!.AsObject();
        Assert.Equal(4, training["batch_size"]!.GetValue<int>());
        double stepsPerSecond = training["steps_per_second"]!.GetValue<double>();
        Assert.True(stepsPerSecond > 0);
        Assert.Equal(4 * stepsPerSecond, training["images_per_second"]!.GetValue<double>(), 9);
        Assert.Contains("training (forward, loss, backward, clipping, AdamW; batch 4", run.Output);
        // The bf16 figure and the printed ratio come from the same run.
        var bf16 = r["training_bf16"]!.AsObject();
        Assert.Equal("bf16", bf16["precision"]!.GetValue<string>());
        double ratio = bf16["steps_per_second"]!.GetValue<double>() / stepsPerSecond;
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"in bf16 mixed precision (`train --precision bf16`), {ratio:0.00}x"), run.Output);
        // Half-precision sampling, at the largest batch size, against float32 in the same run; the printed ratio is theirs.
        var half = r["sampling_bf16"]!.AsObject();
        Assert.Equal(3, half["batch_size"]!.GetValue<int>());
        double halfRatio = half["images_per_second"]!.GetValue<double>() / half["float32_images_per_second"]!.GetValue<double>();
        Assert.Contains(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"in float32, {halfRatio:0.00}x"), run.Output);
        // Every sampling disposes what it made: the live tensor count is back where the warm-up left it.
        Assert.Equal(r["live_tensors_after_warm_up"]!.GetValue<long>(), r["live_tensors_after"]!.GetValue<long>());
    }

    [Fact]
    public void TrainingCanBeLeftOut()
    {
        var model = TinyModels.WriteFolder(_temp.File("model"));
        var json = _temp.File("bench.json");
        var run = CliRun.Of("bench", "--model", model, "--batch-sizes", "1", "--images", "1", "--repeats", "1", "--compare-batch", "1",
            "--train-batch", "0", "--json", json);
        Assert.True(run.ExitCode == 0, run.Error);
        Assert.DoesNotContain("training (", run.Output);
        Assert.Null(JsonNode.Parse(File.ReadAllText(json))!["training"]);
        Assert.Null(JsonNode.Parse(File.ReadAllText(json))!["training_bf16"]);
    }

    [Theory]
    [InlineData("--batch-sizes", "0,2", "batch sizes must be positive")]
    [InlineData("--batch-sizes", "one", "--batch-sizes takes comma-separated integers")]
    [InlineData("--repeats", "0", "the number of repeats must be positive")]
    [InlineData("--cfg", "-1", "cfg (guidance scale) must be a finite number")]
    [InlineData("--top-p", "1.5", "top-p must be")]
    [InlineData("--train-batch", "-1", "--train-batch must be 0 (skip) or positive")]
    [InlineData("--train-steps", "0", "--train-steps must be positive")]
    [InlineData("--top-k", "-1", "top-k must be 0 (off)")]
    public void BadSettingsAreRefusedInOneSentence(string option, string value, string message)
    {
        var model = TinyModels.WriteFolder(_temp.File("model"));
        var run = CliRun.Of("bench", "--model", model, option, value);
        Assert.NotEqual(0, run.ExitCode);
        Assert.Contains(message, run.Error);
    }
}
