"""Similar-car search on Stanford Cars: a frozen ResNet backbone, a cached fill pass and a trained head."""
