namespace VarSharp.Tests.Support;

/// <summary>A fact that is skipped, with a message naming the folder it looked for, when ../shared/golden is absent.</summary>
public sealed class GoldenFactAttribute : FactAttribute
{
    public GoldenFactAttribute()
    {
        if (!SharedData.HasGolden) Skip = SharedData.MissingMessage;
    }
}

/// <summary>A theory that is skipped, with a message naming the folder it looked for, when ../shared/golden is absent.</summary>
public sealed class GoldenTheoryAttribute : TheoryAttribute
{
    public GoldenTheoryAttribute()
    {
        if (!SharedData.HasGolden) Skip = SharedData.MissingMessage;
    }
}
